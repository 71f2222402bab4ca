"""Batched image preprocessing on tensors: uint8 → float, train-time augmentation (kornia), normalisation; for clips
also the choice of the frames a model sees (`VideoPreprocessor`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlfuse.config import AugmentConfig, DataConfig, VideoDataConfig


def build_augmenter(cfg: AugmentConfig, *, video: bool = False) -> nn.Module | None:
    """A kornia pipeline for the enabled augmentations, or None when all are off. With `video`, it takes clips
    (B, T, C, H, W) and draws one set of parameters per clip, applied to all its frames (a flip that changed from
    frame to frame would invent motion).

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
    if not ops:
        return None
    return K.VideoSequential(*ops, data_format="BTCHW", same_on_frame=True) if video else nn.Sequential(*ops)


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


def centre_frames(stored: int, frames: int) -> Tensor:
    """(T,) the stored frames a clip is read as, evenly spaced: the centre of each of `frames` equal segments of the
    `stored` ones — at evaluation, at prediction and from cached frame features alike."""
    return (2 * torch.arange(frames) + 1) * stored // (2 * frames)  # (T,)


class VideoPreprocessor(ImagePreprocessor):
    """Turns a batch of stored clips (B, F, C, H, W) uint8 into the (B, T, C, H, W) float clips a video model reads:
    picks T = `data.video.frames` of the F stored frames (uniformly; at training with `sampling: random`, one at random
    in each of T equal segments, kept in order), augments each clip alike over its frames, and normalises."""

    def __init__(self, data_cfg: VideoDataConfig, *, augment: bool) -> None:
        super().__init__(data_cfg, augment=False)
        self.frames = data_cfg.video.frames
        self.random = augment and data_cfg.video.sampling == "random"
        self.augmenter = build_augmenter(data_cfg.augment, video=True) if augment else None

    def frame_indices(self, batch: int, stored: int) -> Tensor:
        """(B, T) which stored frames each clip shows, ascending."""
        t = self.frames
        k = torch.arange(t)  # (T,)
        if not self.random:
            return centre_frames(stored, t).expand(batch, t)  # (B, T)
        start = k * stored // t  # (T,) each segment's first frame
        end = torch.maximum(start + 1, (k + 1) * stored // t)  # (T,) one past its last (at least one frame)
        return start + (torch.rand(batch, t) * (end - start)).long()  # (B, T); torch's RNG: checkpointed

    def __call__(self, clips: Tensor) -> Tensor:
        """clips: (B, F, C, H, W) uint8 → (B, T, C, H, W) float32."""
        b, stored = clips.shape[:2]
        if stored != self.frames or self.random:
            index = self.frame_indices(b, stored)  # (B, T)
            clips = clips[torch.arange(b)[:, None], index]  # (B, T, C, H, W)
        x = clips.float().div_(255.0)  # (B, T, C, H, W) in [0, 1]
        if self.augmenter is not None:
            x = self.augmenter(x).clamp_(0.0, 1.0)
        return (x - self.mean) / self.std  # (1, C, 1, 1) broadcasts over (B, T, C, H, W)
