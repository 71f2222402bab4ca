"""The classic Keras-example text encoder: Embedding(vocab, 32) → LSTM(64)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vlfuse.registry import TEXT_ENCODERS, ComponentConfig
from vlfuse.types import EncoderOutput


class SeedLSTMConfig(ComponentConfig):
    """No options: the architecture is fixed (Embedding(vocab, 32) → LSTM(64))."""

    name: Literal["seed_lstm"] = "seed_lstm"

    tiny: ClassVar[dict[str, Any]] = {}  # overrides for a fast test-sized variant


@TEXT_ENCODERS.register("seed_lstm", SeedLSTMConfig)
class SeedLSTMEncoder(nn.Module):
    """Embedding(vocab, 32) → LSTM(64), each row read up to its last real token (as a packed sequence would be).

    Real tokens are expected first in each row (right padding). pooled is the LSTM state at each row's last real
    token, (B, 64), zeros for rows without tokens; tokens are the LSTM outputs, (B, L, 64), zero at padding.

    The LSTM runs once over the batch's longest row, padded rows included, and each row's state is read at its own
    last token: an LSTM's output at a step does not depend on later steps, so this is exactly the packed result,
    and one fused call over a padded batch is several times faster on a CPU than a packed one (which steps through
    time one matrix product at a time).

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
        exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()  # a traced length would be fixed
        steps = ids.shape[1] if exporting else max(1, int(lengths.max()))  # later steps are padding in every row
        x = self.embed(ids[:, :steps])  # (B, S, 32)
        state = x.new_zeros(1, ids.shape[0], self.hidden)  # (1, B, 64): LSTM's default, explicit so ONNX keeps B free
        out, _ = self.lstm(x, (state, state))  # (B, S, 64)
        last = lengths.clamp(min=1) - 1  # (B,) rows without tokens read step 0, zeroed below
        at_last = last.view(-1, 1, 1).expand(-1, 1, self.hidden)  # (B, 1, 64)
        pooled = out.gather(1, at_last).squeeze(1) * (lengths > 0).unsqueeze(-1)  # (B, 64)
        tokens = F.pad(out, (0, 0, 0, ids.shape[1] - steps)) * mask.unsqueeze(-1)  # (B, L, 64)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=mask)
