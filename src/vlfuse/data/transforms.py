"""Batched image preprocessing on tensors: uint8 → float, train-time augmentation (kornia), normalisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlfuse.config import AugmentConfig, DataConfig


def build_augmenter(cfg: AugmentConfig) -> nn.Module | None:
    """A kornia pipeline for the enabled augmentations, or None when all are off.

    Randomness comes from torch's global generator, whose state the trainer checkpoints (exact resume).
    """
    if not any(cfg.model_dump().values()):
        return None
    import kornia.augmentation as K  # only when augmenting (0.2 s of import)

    ops: list[nn.Module] = []
    if cfg.hflip:
        ops.append(K.RandomHorizontalFlip(p=0.5))
    if cfg.rotate or cfg.translate or cfg.scale:
        scale = (1.0 - cfg.scale, 1.0 + cfg.scale) if cfg.scale else None
        translate = (cfg.translate, cfg.translate) if cfg.translate else None
        ops.append(K.RandomAffine(degrees=cfg.rotate, translate=translate, scale=scale, padding_mode="border", p=1.0))
    if cfg.brightness or cfg.contrast:
        ops.append(K.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, p=1.0))
    if cfg.erase:
        ops.append(K.RandomErasing(p=cfg.erase, scale=(0.02, 0.15)))
    return nn.Sequential(*ops) if ops else None


class ImagePreprocessor:
    """Turns a uint8 image batch into the normalised float batch a model consumes."""

    def __init__(self, data_cfg: DataConfig, *, augment: bool) -> None:
        channels = data_cfg.channels
        mean = data_cfg.mean or [0.5] * channels
        std = data_cfg.std or [0.5] * channels
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"data.mean/data.std need {channels} values (one per channel), got {mean} / {std}")
        self.mean = torch.tensor(mean).view(1, channels, 1, 1)  # (1, C, 1, 1)
        self.std = torch.tensor(std).view(1, channels, 1, 1)  # (1, C, 1, 1)
        self.augmenter = build_augmenter(data_cfg.augment) if augment else None

    def __call__(self, images: Tensor) -> Tensor:
        """images: (B, C, H, W) uint8 → (B, C, H, W) float32, augmented (train) and normalised."""
        x = images.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        if self.augmenter is not None:
            x = self.augmenter(x).clamp_(0.0, 1.0)
        return (x - self.mean) / self.std
