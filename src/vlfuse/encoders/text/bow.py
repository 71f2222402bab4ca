"""Bag of words: the masked mean (and optionally max) of token embeddings, then an optional MLP."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from vlfuse.layers import masked_mean
from vlfuse.registry import TEXT_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class BOWConfig(ComponentConfig):
    name: Literal["bow"] = "bow"
    embed_dim: int = Field(64, ge=1)  # token embedding width
    pool: Literal["mean", "meanmax"] = "mean"  # masked mean, or [mean, max] concatenated (2·embed_dim wide)
    hidden: list[PositiveInt] = []  # MLP widths after pooling; [] = no MLP
    activation: Literal["relu", "tanh"] = "relu"  # MLP activation (the classic easy-VQA model uses tanh)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # before each MLP layer

    tiny: ClassVar[dict[str, Any]] = {"embed_dim": 8, "pool": "meanmax", "hidden": [8]}


@TEXT_ENCODERS.register("bow", BOWConfig)
class BOWEncoder(nn.Module):
    """Order-free text encoder; tokens are the raw embeddings, pooled the masked mean [+ max] through the MLP.

    Rows without tokens pool to zeros (before the MLP).

    Args:
        cfg: embedding width, pooling and MLP.
        vocab_size: number of token ids.
        pad_id: the padding id (its embedding stays zero).
        max_length: padded text length (unused).
    """

    def __init__(self, cfg: BOWConfig, *, vocab_size: int, pad_id: int, max_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=pad_id)
        self.use_max = cfg.pool == "meanmax"
        width = cfg.embed_dim * (2 if self.use_max else 1)
        layers: list[nn.Module] = []
        for out in cfg.hidden:
            act = nn.ReLU() if cfg.activation == "relu" else nn.Tanh()
            layers += [nn.Dropout(cfg.dropout), nn.Linear(width, out), act]
            width = out
        self.mlp = nn.Sequential(*layers)
        self.token_dim = cfg.embed_dim
        self.out_dim = width

    def forward(self, ids: Tensor, mask: Tensor | None) -> EncoderOutput:
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask  # (B, L)
        x = self.embed(ids)  # (B, L, E)
        pooled = masked_mean(x, mask)  # (B, E)
        if self.use_max:
            peak = x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)  # (B, E)
            peak = torch.where(mask.any(dim=1, keepdim=True), peak, 0.0)  # (B, E), zeros for empty rows
            pooled = torch.cat([pooled, peak], dim=-1)  # (B, 2E)
        pooled = self.mlp(pooled)  # (B, out_dim)
        return EncoderOutput(tokens=x, pooled=pooled, mask=mask)
