"""A recurrent model over frames: a GRU reads the frames' summaries in order; its last state is the clip's vector."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor, nn

from vlfuse.encoders.temporal._common import TemporalConfig, frame_summary
from vlfuse.registry import TEMPORAL_MODULES
from vlfuse.types import EncoderOutput


class GRUConfig(TemporalConfig):
    name: Literal["gru"] = "gru"
    hidden: int = Field(128, ge=1)
    layers: int = Field(1, ge=1)

    tiny: ClassVar[dict[str, Any]] = {"dim": 16, "hidden": 16}


@TEMPORAL_MODULES.register("gru", GRUConfig)
class TemporalGRU(nn.Module):
    """pooled = the last layer's final hidden state (B, hidden); tokens = its state after each frame (B, T, hidden)."""

    order_aware: ClassVar[bool] = True

    def __init__(self, cfg: GRUConfig, *, token_dim: int, pooled_dim: int, frames: int, tokens_per_frame: int) -> None:
        super().__init__()
        self.summary = frame_summary(cfg, token_dim=token_dim, pooled_dim=pooled_dim, tokens_per_frame=tokens_per_frame)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.out_dim = self.token_dim = cfg.hidden

    def forward(self, tokens: Tensor, pooled: Tensor) -> EncoderOutput:
        """tokens (B, T, N, D_tok), pooled (B, T, D) → tokens (B, T, hidden), pooled (B, hidden)."""
        states, last = self.gru(self.summary(tokens, pooled))  # (B, T, hidden), (layers, B, hidden)
        return EncoderOutput(tokens=states, pooled=last[-1])
