"""A temporal transformer: one summary token per frame plus a [CLS] token, learned time embeddings, self-attention
across frames (pre-norm layers). Order-aware through the time embeddings."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from vlfuse.encoders.temporal._common import TemporalConfig, frame_summary
from vlfuse.errors import ConfigError
from vlfuse.layers import encoder_layers
from vlfuse.registry import TEMPORAL_MODULES
from vlfuse.types import EncoderOutput


class TemporalTransformerConfig(TemporalConfig):
    name: Literal["transformer"] = "transformer"
    depth: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    tiny: ClassVar[dict[str, Any]] = {"dim": 16, "depth": 1, "heads": 2}


@TEMPORAL_MODULES.register("transformer", TemporalTransformerConfig)
class TemporalTransformer(nn.Module):
    """pooled = the [CLS] token after `depth` layers; tokens = the frames' tokens (B, T, dim).

    Args:
        cfg: width, depth, heads.
        token_dim / pooled_dim / tokens_per_frame: the frame encoder's output sizes.
        frames: the most frames a clip has (T); one time embedding each.
    """

    order_aware: ClassVar[bool] = True

    def __init__(
        self, cfg: TemporalTransformerConfig, *, token_dim: int, pooled_dim: int, frames: int, tokens_per_frame: int
    ) -> None:  # fmt: skip
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ConfigError(f"model.temporal: dim ({cfg.dim}) must be a multiple of heads ({cfg.heads})")
        self.summary = frame_summary(cfg, token_dim=token_dim, pooled_dim=pooled_dim, tokens_per_frame=tokens_per_frame)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))  # (1, 1, dim)
        # unit scale, as the LayerNorm'd frame summaries it is added to: at ViT's 0.02 the order is ~50× weaker than
        # the content and attention learns to use it only very slowly
        self.time = nn.Parameter(torch.randn(1, frames + 1, cfg.dim))  # (1, 1 + T, dim): [CLS], frames
        self.layers = encoder_layers(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.depth)
        self.norm = nn.LayerNorm(cfg.dim)
        self.frames = frames
        self.out_dim = self.token_dim = cfg.dim

    def order(self, b: int, t: int, device: torch.device) -> Tensor | None:
        """(B, T) the frame order each clip is read in (None: as given); the shuffled baseline overrides it."""
        return None

    def forward(self, tokens: Tensor, pooled: Tensor) -> EncoderOutput:
        """tokens (B, T, N, D_tok), pooled (B, T, D) → tokens (B, T, dim), pooled (B, dim)."""
        b, t = pooled.shape[:2]
        if t > self.frames:
            raise ValueError(f"a clip of {t} frames; this temporal transformer was built for at most {self.frames}")
        x = self.summary(tokens, pooled)  # (B, T, dim)
        order = self.order(b, t, x.device)
        if order is not None:
            x = x.gather(1, order[..., None].expand(-1, -1, x.shape[-1]))  # (B, T, dim) frames permuted per clip
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.time[:, : t + 1]  # (B, 1 + T, dim)
        for layer in self.layers:
            x = layer(x)  # (B, 1 + T, dim)
        x = self.norm(x)
        return EncoderOutput(tokens=x[:, 1:], pooled=x[:, 0])  # (B, T, dim), (B, dim)
