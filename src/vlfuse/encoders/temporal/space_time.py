"""Divided space-time attention (TimeSformer, Bertasius et al. 2021): every block attends across frames at each
spatial position, then across positions within each frame, then a feed-forward layer (pre-norm, residual)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from vlfuse.errors import ConfigError
from vlfuse.registry import TEMPORAL_MODULES, ComponentConfig
from vlfuse.types import EncoderOutput


class SpaceTimeConfig(ComponentConfig):
    name: Literal["space_time"] = "space_time"
    dim: int = Field(64, ge=1)
    depth: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    tiny: ClassVar[dict[str, Any]] = {"dim": 16, "depth": 1, "heads": 2}


class DividedBlock(nn.Module):
    """x + time-attention, + space-attention, + feed-forward; each on a LayerNorm'd input."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_time, self.norm_space, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.time_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.space_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        hidden = round(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, N, dim) → (B, T, N, dim)."""
        b, t, n, d = x.shape
        h = x.transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, dim): each position's track over time
        q = self.norm_time(h)
        h = h + self.time_attn(q, q, q, need_weights=False)[0]
        h = h.reshape(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)  # (B*T, N, dim): each frame's positions
        q = self.norm_space(h)
        h = h + self.space_attn(q, q, q, need_weights=False)[0]
        h = h + self.ffn(self.norm_ffn(h))
        return h.reshape(b, t, n, d)  # (B, T, N, dim)


@TEMPORAL_MODULES.register("space_time", SpaceTimeConfig)
class SpaceTimeAttention(nn.Module):
    """tokens = every frame's every position (B, T*N, dim); pooled = their mean, normalised (B, dim).

    Args:
        cfg: width, depth, heads.
        token_dim: the frame encoder's token width.
        frames: the most frames a clip has (one time embedding each).
        tokens_per_frame: N (one space embedding each).
    """

    order_aware: ClassVar[bool] = True

    def __init__(
        self, cfg: SpaceTimeConfig, *, token_dim: int, pooled_dim: int, frames: int, tokens_per_frame: int
    ) -> None:  # fmt: skip
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ConfigError(f"model.temporal: dim ({cfg.dim}) must be a multiple of heads ({cfg.heads})")
        self.proj = nn.Linear(token_dim, cfg.dim)
        self.norm_in = nn.LayerNorm(cfg.dim)  # the embeddings below are added at the scale of its output
        # unit scale (as in the temporal transformer): at 0.02 the order would be ~50× weaker than the content
        self.time = nn.Parameter(torch.randn(1, frames, 1, cfg.dim))  # (1, T, 1, dim)
        self.space = nn.Parameter(torch.randn(1, 1, tokens_per_frame, cfg.dim))  # (1, 1, N, dim)
        block = (cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
        self.blocks = nn.ModuleList(DividedBlock(*block) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.frames = frames
        self.out_dim = self.token_dim = cfg.dim

    def forward(self, tokens: Tensor, pooled: Tensor) -> EncoderOutput:
        """tokens (B, T, N, D_tok), pooled (B, T, D) → tokens (B, T*N, dim), pooled (B, dim)."""
        t = tokens.shape[1]
        if t > self.frames:
            raise ValueError(f"a clip of {t} frames; this space-time model was built for at most {self.frames}")
        x = self.norm_in(self.proj(tokens)) + self.time[:, :t] + self.space  # (B, T, N, dim)
        for block in self.blocks:
            x = block(x)  # (B, T, N, dim)
        x = self.norm(x).flatten(1, 2)  # (B, T*N, dim)
        return EncoderOutput(tokens=x, pooled=x.mean(1))  # (B, T*N, dim), (B, dim)
