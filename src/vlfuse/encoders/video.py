"""A video tower: any registered image encoder applied to every frame, then a temporal module over the frames.

It takes the image side of the fusion zoo: its output is an ordinary EncoderOutput (tokens, pooled), so every fusion
reads a clip as it reads an image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlfuse.data.transforms import centre_frames
from vlfuse.registry import TEMPORAL_MODULES, ComponentConfig
from vlfuse.types import EncoderOutput


class VideoEncoder(nn.Module):
    """frame encoder on (B·T, C, H, W) → (B, T, N, D) tokens and (B, T, D) pooled → temporal module.

    Args:
        frame_encoder: a built image encoder (`out_dim`, `token_dim`).
        temporal: a built temporal module (`out_dim`, `token_dim`).
        frames: T, the frames a clip is read as (`data.video.frames`).
    """

    def __init__(self, frame_encoder: nn.Module, temporal: nn.Module, *, frames: int) -> None:
        super().__init__()
        self.frame_encoder = frame_encoder
        self.temporal = temporal
        self.temporal_frames = frames  # T, the frames a clip is read as
        self.out_dim = temporal.out_dim
        self.token_dim = temporal.token_dim

    @property
    def frozen(self) -> bool:
        """Whether the frame encoder is frozen: its per-frame features can then be cached (`vlfuse.features`)."""
        return bool(getattr(self.frame_encoder, "frozen", False)) and hasattr(self.frame_encoder, "cache_key")

    def forward(self, video: Tensor) -> EncoderOutput:
        """video (B, T, C, H, W) → tokens (B, M, D'), pooled (B, D')."""
        b, t = video.shape[:2]
        frames = self.frame_encoder(video.flatten(0, 1))  # tokens (B*T, N, D), pooled (B*T, D)
        tokens = frames.tokens.unflatten(0, (b, t))  # (B, T, N, D)
        pooled = frames.pooled.unflatten(0, (b, t))  # (B, T, D)
        return self.temporal(tokens, pooled)

    def from_cached(self, frames: EncoderOutput) -> EncoderOutput:
        """Cached frame features — tokens (B, F, N, D), pooled (B, F, D) of the F stored frames — through the temporal
        module, reading the T it was built for (evenly spaced, as the preprocessor picks them at evaluation)."""
        stored, t = frames.pooled.shape[1], self.temporal_frames
        if stored != t:
            keep = centre_frames(stored, t)  # (T,) the frames the preprocessor reads at evaluation
            frames = EncoderOutput(tokens=frames.tokens[:, keep], pooled=frames.pooled[:, keep])
        return self.temporal(frames.tokens, frames.pooled)


def tokens_per_frame(frame_encoder: nn.Module, *, in_channels: int, image_size: int) -> int:
    """N, the token count of one frame, from one forward pass on a blank frame (eval mode, no gradient: it changes
    neither the encoder's statistics nor the random stream)."""
    was_training = frame_encoder.training
    with torch.no_grad():
        out = frame_encoder.eval()(torch.zeros(1, in_channels, image_size, image_size))  # tokens (1, N, D)
    frame_encoder.train(was_training)
    return out.tokens.shape[1]


def wrap_frame_encoder(
    frame_encoder: nn.Module, temporal_cfg: ComponentConfig, *, in_channels: int, image_size: int, frames: int
) -> VideoEncoder:  # fmt: skip
    """A built frame encoder followed by the temporal module `temporal_cfg` names."""
    temporal = TEMPORAL_MODULES.build(
        temporal_cfg, token_dim=frame_encoder.token_dim, pooled_dim=frame_encoder.out_dim, frames=frames,
        tokens_per_frame=tokens_per_frame(frame_encoder, in_channels=in_channels, image_size=image_size),
    )  # fmt: skip
    return VideoEncoder(frame_encoder, temporal, frames=frames)
