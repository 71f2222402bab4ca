"""A (bi)GRU text encoder: Embedding → multi-layer GRU over the packed (unpadded) sequences."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vlfuse.registry import TEXT_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class GRUConfig(ComponentConfig):
    name: Literal["gru"] = "gru"
    embed_dim: int = Field(64, ge=1)  # token embedding width
    hidden: int = Field(128, ge=1)  # GRU state width per direction
    layers: int = Field(1, ge=1)  # stacked GRU layers
    bidirectional: bool = True  # read both ways; pooled and tokens are then 2·hidden wide
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on the embeddings and between GRU layers

    tiny: ClassVar[dict[str, Any]] = {"embed_dim": 8, "hidden": 8}  # overrides for a fast test-sized variant


@TEXT_ENCODERS.register("gru", GRUConfig)
class GRUEncoder(nn.Module):
    """Embedding → GRU; pooled = the last layer's final state (both directions concatenated).

    Real tokens are expected first in each row (right padding). Rows without tokens give zeros.

    Args:
        cfg: widths, depth and direction.
        vocab_size: number of token ids.
        pad_id: the padding id (its embedding stays zero).
        max_length: padded text length (unused: the GRU takes any length).
    """

    exports_to_onnx = False  # it runs on packed sequences, which the TorchScript exporter cannot trace

    def __init__(self, cfg: GRUConfig, *, vocab_size: int, pad_id: int, max_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(
            cfg.embed_dim,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.directions = 2 if cfg.bidirectional else 1
        self.token_dim = self.out_dim = cfg.hidden * self.directions

    def forward(self, ids: Tensor, mask: Tensor | None) -> EncoderOutput:
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask  # (B, L)
        lengths = mask.sum(dim=1)  # (B,)
        x = self.dropout(self.embed(ids))  # (B, L, E)
        # rows without tokens run on one pad step (packing needs length >= 1) and are zeroed below
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed)  # h: (layers*dirs, B, hidden), in the original row order
        tokens, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, L, dirs*hidden)
        tokens = tokens * mask.unsqueeze(-1)  # (B, L, dirs*hidden)
        last = h[-self.directions :].transpose(0, 1)  # (B, dirs, hidden)
        pooled = last.flatten(1) * (lengths > 0).unsqueeze(-1)  # (B, dirs*hidden)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=mask)
