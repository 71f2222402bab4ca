"""Mean pooling over frames: the order-blind baseline (reversing or shuffling the frames changes nothing)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from vlfuse.encoders.temporal._common import TemporalConfig, frame_summary
from vlfuse.registry import TEMPORAL_MODULES
from vlfuse.types import EncoderOutput


class MeanConfig(TemporalConfig):
    name: Literal["mean"] = "mean"

    tiny: ClassVar[dict[str, Any]] = {"dim": 16}


@TEMPORAL_MODULES.register("mean", MeanConfig)
class MeanPooling(nn.Module):
    """pooled = mean over frames of each frame's summary; tokens = each spatial token averaged over frames."""

    order_aware: ClassVar[bool] = False

    def __init__(self, cfg: MeanConfig, *, token_dim: int, pooled_dim: int, frames: int, tokens_per_frame: int) -> None:
        super().__init__()
        self.summary = frame_summary(cfg, token_dim=token_dim, pooled_dim=pooled_dim, tokens_per_frame=tokens_per_frame)
        self.out_dim, self.token_dim = cfg.dim, token_dim

    def forward(self, tokens: Tensor, pooled: Tensor) -> EncoderOutput:
        """tokens (B, T, N, D_tok), pooled (B, T, D) → tokens (B, N, D_tok), pooled (B, dim)."""
        return EncoderOutput(tokens=tokens.mean(1), pooled=self.summary(tokens, pooled).mean(1))  # (B, N, D), (B, dim)
