"""The classic Keras-example text encoder: Embedding(vocab, 32) → LSTM(64)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vlfuse.registry import TEXT_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class SeedLSTMConfig(ComponentConfig):
    """No options: the architecture is fixed (Embedding(vocab, 32) → LSTM(64))."""

    name: Literal["seed_lstm"] = "seed_lstm"

    tiny: ClassVar[dict[str, Any]] = {}  # overrides for a fast test-sized variant


@TEXT_ENCODERS.register("seed_lstm", SeedLSTMConfig)
class SeedLSTMEncoder(nn.Module):
    """Embedding(vocab, 32) → LSTM(64) over the packed (unpadded) sequences.

    Real tokens are expected first in each row (right padding). pooled is the LSTM state at each row's last real
    token, (B, 64), zeros for rows without tokens; tokens are the LSTM outputs, (B, L, 64), zero at padding.

    Args:
        cfg: the (empty) config.
        vocab_size: number of token ids.
        pad_id: the padding id (its embedding stays zero).
        max_length: padded text length (unused: the LSTM takes any length).
    """

    embed_dim = 32
    hidden = 64

    def __init__(self, cfg: SeedLSTMConfig, *, vocab_size: int, pad_id: int, max_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, self.embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(self.embed_dim, self.hidden, batch_first=True)
        self.token_dim = self.out_dim = self.hidden

    def forward(self, ids: Tensor, mask: Tensor | None) -> EncoderOutput:
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask  # (B, L)
        lengths = mask.sum(dim=1)  # (B,)
        x = self.embed(ids)  # (B, L, 32)
        # rows without tokens run on one pad step (packing needs length >= 1) and are zeroed below
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)  # h: (1, B, 64), in the original row order
        tokens, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, L, 64)
        tokens = tokens * mask.unsqueeze(-1)  # (B, L, 64)
        pooled = h[-1] * (lengths > 0).unsqueeze(-1)  # (B, 64)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=mask)
