"""EMAP (Hessel & Lee, EMNLP 2020): how much of a model's accuracy needs interactions between image and text.

Over a chunk of N rows, the model's logits for every (image a, text b) pair form f(a, b) (N, N, K). Its best additive
projection is f̂(a, b) = mean_b' f(a, b') + mean_a' f(a', b) − mean_a'b' f(a', b'); a model without cross-modal
interactions is its own projection. The gap = accuracy(f) − accuracy(f̂) on the real pairs (a = b): near zero means
the fusion's interactions add nothing the two modalities do not give apart. The encoders run once per row; only the
fusion and head run on the N² pairs (`MultimodalModel.encode` / `fuse`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlfuse.data.loader import BatchLoader
from vlfuse.data.splits import SplitData
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import ConfigError
from vlfuse.explain.split import sampled
from vlfuse.model import gather_rows
from vlfuse.objective import Objective
from vlfuse.types import EncoderOutput


@torch.inference_mode()
def pair_logits(model: nn.Module, image: EncoderOutput, text: EncoderOutput, *, pairs_per_call: int = 8192) -> Tensor:
    """(N, N, K) logits of every (image row a, text row b) pair from per-row encoder outputs of N rows."""
    n = image.pooled.shape[0]
    images_per_call = max(1, pairs_per_call // n)
    blocks = []
    cols = torch.arange(n, device=image.pooled.device)  # (N,)
    for start in range(0, n, images_per_call):
        rows = torch.arange(start, min(n, start + images_per_call), device=cols.device)  # (R,)
        a = rows.repeat_interleave(n)  # (R·N,) image row of each pair
        b = cols.repeat(len(rows))  # (R·N,) text row of each pair
        logits = model.fuse(gather_rows(image, a), gather_rows(text, b)).float()  # (R·N, K)
        blocks.append(logits.view(len(rows), n, -1))
    return torch.cat(blocks)  # (N, N, K)


def additive_projection(grid: Tensor) -> Tensor:
    """The EMAP projection of pair logits (N, N, K): row means + column means − grand mean."""
    return grid.mean(1, keepdim=True) + grid.mean(0, keepdim=True) - grid.mean((0, 1), keepdim=True)  # (N, N, K)


@torch.inference_mode()
def emap_split(
    model: nn.Module, objective: Objective, split: SplitData, preprocess: ImagePreprocessor, *, chunk: int = 256,
    seed: int = 0, limit: int | None = None,
) -> dict[str, float | int]:  # fmt: skip
    """Accuracy of the model and of its EMAP projection over a split (or `limit` rows of it drawn with `seed`), in
    shuffled chunks of `chunk` rows.

    Raises:
        ConfigError: the model does not read both modalities, or the objective is multilabel (EMAP is defined here
            for one label per row).
    """
    if model.image_encoder is None or model.text_encoder is None:
        raise ConfigError("EMAP compares a model with its additive projection over image × text pairs; this model "
                          "reads one modality only")  # fmt: skip
    if objective.kind == "multilabel":
        raise ConfigError("EMAP is computed for multiclass and binary runs (one label per row)")
    device = next(model.parameters()).device
    loader = BatchLoader(sampled(split, limit, seed), preprocess, batch_size=chunk, shuffle=True, seed=seed)
    full = projected = rows = 0
    for batch in loader:
        batch = batch.to(device)
        image, text = model.encode(batch)  # per row (N, …)
        grid = pair_logits(model, image, text)  # (N, N, K)
        diagonal = torch.arange(len(batch), device=device)  # (N,)
        labels = batch.label.to(device)
        full += int((objective.predictions(grid[diagonal, diagonal]) == labels).sum())
        projected += int((objective.predictions(additive_projection(grid)[diagonal, diagonal]) == labels).sum())
        rows += len(batch)
    return {"rows": rows, "chunk": chunk, "accuracy": full / rows, "emap_accuracy": projected / rows,
            "emap_gap": (full - projected) / rows}  # fmt: skip
