"""A small Transformer text encoder: embeddings + learned positions + pre-norm encoder layers."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vlfuse.layers import encoder_layers, masked_mean
from vlfuse.registry import TEXT_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class TransformerTextConfig(ComponentConfig):
    name: Literal["transformer"] = "transformer"
    dim: int = Field(128, ge=1)  # token width
    depth: int = Field(2, ge=1)  # encoder layers
    heads: int = Field(4, ge=1)  # attention heads; must divide dim
    mlp_ratio: float = Field(2.0, gt=0)  # feed-forward width = mlp_ratio · dim
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # inside the layers

    tiny: ClassVar[dict[str, Any]] = {"dim": 16, "depth": 1, "heads": 2}

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TransformerTextConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


@TEXT_ENCODERS.register("transformer", TransformerTextConfig)
class TransformerTextEncoder(nn.Module):
    """Embedding + learned positions → pre-norm encoder layers (padding masked out) → LayerNorm.

    pooled is the masked mean over real tokens (zeros for rows without tokens).

    Args:
        cfg: width, depth, heads.
        vocab_size: number of token ids.
        pad_id: the padding id (its embedding stays zero).
        max_length: the longest text, in tokens (size of the position table).
    """

    def __init__(self, cfg: TransformerTextConfig, *, vocab_size: int, pad_id: int, max_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.dim, padding_idx=pad_id)
        self.pos = nn.Parameter(torch.zeros(1, max_length, cfg.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.layers = encoder_layers(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.depth)
        self.norm = nn.LayerNorm(cfg.dim)
        self.max_length = max_length
        self.token_dim = self.out_dim = cfg.dim

    def forward(self, ids: Tensor, mask: Tensor | None) -> EncoderOutput:
        if ids.shape[1] > self.max_length:
            raise ValueError(f"text of {ids.shape[1]} tokens is longer than max_length {self.max_length}")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask  # (B, L)
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]  # (B, L, D)
        # rows without tokens attend over their padding instead (a fully masked softmax gives NaN); zeroed below
        padding = ~mask & mask.any(dim=1, keepdim=True)  # (B, L)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
        x = self.norm(x)
        pooled = masked_mean(x, mask)  # (B, D)
        return EncoderOutput(tokens=x, pooled=pooled, mask=mask)
