"""The single-middle-frame baseline: the model sees frame T // 2 only (how far one frame gets on a benchmark)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from vlfuse.encoders.temporal._common import TemporalConfig, frame_summary
from vlfuse.registry import TEMPORAL_MODULES
from vlfuse.types import EncoderOutput


class MiddleFrameConfig(TemporalConfig):
    name: Literal["middle_frame"] = "middle_frame"

    tiny: ClassVar[dict[str, Any]] = {"dim": 16}


@TEMPORAL_MODULES.register("middle_frame", MiddleFrameConfig)
class MiddleFrame(nn.Module):
    """pooled = the middle frame's summary; tokens = the middle frame's spatial tokens. With an odd frame count,
    reversing the clip keeps the middle frame, so the output is unchanged."""

    order_aware: ClassVar[bool] = False

    def __init__(
        self, cfg: MiddleFrameConfig, *, token_dim: int, pooled_dim: int, frames: int, tokens_per_frame: int
    ) -> None:  # fmt: skip
        super().__init__()
        self.summary = frame_summary(cfg, token_dim=token_dim, pooled_dim=pooled_dim, tokens_per_frame=tokens_per_frame)
        self.out_dim, self.token_dim = cfg.dim, token_dim

    def forward(self, tokens: Tensor, pooled: Tensor) -> EncoderOutput:
        """tokens (B, T, N, D_tok), pooled (B, T, D) → tokens (B, N, D_tok), pooled (B, dim)."""
        middle = tokens.shape[1] // 2
        frame_tokens, frame_pooled = tokens[:, middle : middle + 1], pooled[:, middle : middle + 1]  # (B, 1, N, D), …
        return EncoderOutput(tokens=frame_tokens[:, 0], pooled=self.summary(frame_tokens, frame_pooled)[:, 0])
