"""Measured checks on attribution maps: does a map point at what matters, and does it depend on the model at all?

- Deletion (Samek et al.; the "remove the top pixels" test): removing the top-attributed fraction of pixels should
  lower the explained probability more than removing a random fraction of pixels does.
- Pointing game (Zhang et al.): the map's peak falls inside the object, where the object's pixels are known.
- Model randomization (Adebayo et al., NeurIPS 2018): a map of the same input from a re-initialised model should
  be unlike the trained model's (low Spearman rank correlation); a map that stays the same explains the input, not
  the model.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from vlfuse.explain.target import log_odds, removed_pixels, with_pixels
from vlfuse.objective import Objective
from vlfuse.types import Batch


def deletion_keep_masks(heatmap: Tensor, *, fraction: float = 0.1, seed: int = 0) -> Tensor:
    """(2, 1, H, W) bool: the pixels kept when the top `fraction` of `heatmap` (H, W) is removed (row 0), and when
    as many random pixels are removed (row 1, drawn with `seed`)."""
    flat = heatmap.flatten()  # (H·W,)
    count = max(1, int(round(fraction * flat.numel())))
    gen = torch.Generator().manual_seed(seed)
    random = torch.randperm(flat.numel(), generator=gen)[:count].to(flat.device)
    keep = torch.ones(2, flat.numel(), dtype=torch.bool, device=flat.device)  # (2, H·W)
    keep[0, flat.topk(count).indices] = False
    keep[1, random] = False
    return keep.view(2, 1, *heatmap.shape)


@torch.no_grad()
def deletion_check(
    model: nn.Module, objective: Objective, batch: Batch, target: int, heatmap: Tensor, *, fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, float | bool]:  # fmt: skip
    """Probability drop when the top `fraction` of pixels by `heatmap` (H, W) are removed (`removed_pixels`),
    against the drop for the same number of random pixels.

    Returns:
        probability, top_drop, random_drop (probability points), the same drops of the log-odds, and passed
        (the top pixels' removal lowers the probability more).
    """
    pixels = batch.image  # (1, C, H, W)
    keep = deletion_keep_masks(heatmap, fraction=fraction, seed=seed)  # (2, 1, H, W)
    removed = torch.where(keep, pixels, removed_pixels(pixels))  # (2, C, H, W): top removed, random removed
    variants = torch.cat([pixels, removed])  # (3, C, H, W)
    odds = log_odds(model, objective, with_pixels(batch, variants))[:, target].double()  # (3,)
    p = odds.sigmoid()  # (3,)
    return {
        "probability": float(p[0]), "top_drop": float(p[0] - p[1]), "random_drop": float(p[0] - p[2]),
        "top_log_odds_drop": float(odds[0] - odds[1]), "random_log_odds_drop": float(odds[0] - odds[2]),
        "passed": bool(odds[1] < odds[2]),  # compared as log-odds: the probabilities' order, no rounding of p ≈ 1
    }  # fmt: skip


def peak_inside(heatmap: Tensor, mask: Tensor) -> bool:
    """Pointing game: whether the map's maximum (H, W) lies on a True pixel of `mask` (H, W)."""
    return bool(mask.flatten()[int(heatmap.flatten().argmax())])


def object_mask(raw_image: Tensor, *, tolerance: int = 8) -> Tensor:
    """(H, W) bool: the pixels that differ from a flat background, taken as the colour of the image's corners.

    For images of one object on a flat background (easy-VQA), this is the object's pixels.
    """
    pixels = raw_image.permute(1, 2, 0).to(torch.int16)  # (H, W, C)
    corners = torch.stack([pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]])  # (4, C)
    background = corners.median(dim=0).values  # (C,)
    return (pixels - background).abs().amax(dim=-1) > tolerance  # (H, W)


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two maps of equal shape (average ranks for ties); 0 when either is constant."""
    x, y = (_ranks(t.flatten().double().cpu().numpy()) for t in (a, b))
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]  # ties share their mean rank


def randomized_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of `model` with every layer that can re-initialise itself re-initialised (the full-randomization test);
    the placeholders and any frozen statistics stay as they are."""
    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in clone.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        elif type(module).__name__ != "ModalityPlaceholders":
            for param in module.parameters(recurse=False):  # layers with their own parameters (attention)
                if param.dim() >= 2:
                    nn.init.xavier_uniform_(param)
                else:
                    nn.init.zeros_(param)
    return clone.eval()
