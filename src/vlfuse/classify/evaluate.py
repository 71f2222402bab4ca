"""Run a trained model over a whole split and score it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlfuse.data.loader import BatchLoader
from vlfuse.data.splits import SplitData
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.objective import Objective


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
