"""Symmetric contrastive (InfoNCE) loss where every matching pair in the batch counts as a positive.

Plain CLIP InfoNCE takes pair (i, i) as the only positive of row i, so two rows captioned "a red circle" push each
other's images and captions apart although each caption describes both images. Here the target of row i is spread
evenly over every column j that matches it (same key — the thing the caption describes — or the same image), which
is the CLIP loss exactly when all keys in the batch differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def positive_mask(keys: Tensor, image_ids: Tensor | None = None) -> Tensor:
    """(B, B) bool: rows i and j match when their keys are equal, or (when given) their images are the same."""
    mask = keys[:, None] == keys[None, :]  # (B, B)
    if image_ids is not None:
        mask = mask | (image_ids[:, None] == image_ids[None, :])  # (B, B)
    return mask


def contrastive_loss(image: Tensor, text: Tensor, logit_scale: Tensor | float, positives: Tensor) -> Tensor:
    """Multi-positive symmetric InfoNCE.

    Args:
        image: (B, E) L2-normalised image embeddings, row i paired with text row i.
        text: (B, E) L2-normalised text embeddings.
        logit_scale: 1 / temperature (scalar).
        positives: (B, B) bool, positives[i, j] = image i and text j match; the diagonal must be True.

    Returns:
        () the mean of the image→text and text→image cross-entropies against the normalised positive masks.
    """
    if not bool(positives.diagonal().all()):
        raise ValueError("positives must mark every row's own pair (the diagonal) as a match")
    logits = logit_scale * image @ text.t()  # (B, B) image i · text j
    target = positives.float()
    target = target / target.sum(dim=1, keepdim=True)  # (B, B) rows sum to 1
    target_t = positives.t().float()
    target_t = target_t / target_t.sum(dim=1, keepdim=True)  # (B, B) text j over images
    image_to_text = F.cross_entropy(logits, target)
    text_to_image = F.cross_entropy(logits.t(), target_t)
    return 0.5 * (image_to_text + text_to_image)


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Plain CLIP InfoNCE (only the diagonal is positive), for reference and tests."""
    logits = logit_scale * image @ text.t()  # (B, B)
    target = torch.arange(len(image), device=image.device)  # (B,)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
