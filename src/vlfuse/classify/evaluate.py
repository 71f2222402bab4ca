"""Run a trained model over a whole split and score it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vlfuse.data.loader import BatchLoader
from vlfuse.data.splits import SplitData
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.objective import Objective

if TYPE_CHECKING:
    from vlfuse.data.shard_io import Shard, ShardIndex
    from vlfuse.data.shards import SampleDecoder


@torch.inference_mode()
def predict_logits(
    model: nn.Module, split: SplitData, preprocess: ImagePreprocessor, *, batch_size: int, device: torch.device
) -> Tensor:
    """Logits for every row of `split`, in row order: (N, K)."""
    was_training = model.training
    model.eval()
    # grouped by image so that each distinct image is encoded once; logits are put back in row order
    loader = BatchLoader(split, preprocess, batch_size=batch_size, shuffle=False, group_by_image=True)
    logits: Tensor | None = None
    for batch in loader:
        out = model(batch.to(device)).float().cpu()  # (B, K)
        if logits is None:
            logits = torch.empty(len(split), out.shape[1])  # (N, K)
        logits[batch.index] = out
    model.train(was_training)
    return logits


def evaluate_split(
    model: nn.Module,
    split: SplitData,
    objective: Objective,
    preprocess: ImagePreprocessor,
    *,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, float], Tensor]:
    """Objective metrics on `split` plus its logits (N, K)."""
    logits = predict_logits(model, split, preprocess, batch_size=batch_size, device=device)
    metrics = objective.metrics(logits, split.labels)
    metrics["samples"] = len(split)
    return metrics, logits


@torch.inference_mode()
def shard_logits(
    model: nn.Module, index: ShardIndex, split: str, decode: SampleDecoder, *, batch_size: int, on_error: str,
    device: torch.device, shards: list[Shard] | None = None,
) -> tuple[Tensor, Tensor, list[str]]:  # fmt: skip
    """Logits (N, K), labels and texts of every row of a packed split (or of its `shards`), streamed in shard order."""
    from vlfuse.data.shards import split_batches_with_texts

    was_training = model.training
    model.eval()
    per_batch = max(1, round(batch_size / index.rows_per_sample(split)))
    logits, labels, texts = [], [], []
    for batch, rows in split_batches_with_texts(index, split, decode, samples_per_batch=per_batch, on_error=on_error,
                                                shards=shards):  # fmt: skip
        logits.append(model(batch.to(device)).float().cpu())  # (B, K)
        labels.append(batch.label)
        texts += rows
    model.train(was_training)
    if not logits:  # a process whose share holds no shard
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), []
    return torch.cat(logits), torch.cat(labels), texts  # (N, K), (N, ...), N


def evaluate_shards(
    model: nn.Module, index: ShardIndex, split: str, decode: SampleDecoder, objective: Objective, *, batch_size: int,
    on_error: str, device: torch.device,
) -> tuple[dict[str, float], Tensor, Tensor, list[str]]:  # fmt: skip
    """Objective metrics, logits (N, K), labels and texts of every row of a packed split."""
    logits, labels, texts = shard_logits(model, index, split, decode, batch_size=batch_size, on_error=on_error,
                                         device=device)  # fmt: skip
    metrics = objective.metrics(logits, labels)
    metrics["samples"] = len(labels)
    return metrics, logits, labels, texts
