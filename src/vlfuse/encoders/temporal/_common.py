"""What the temporal modules share: one vector per frame (`FrameSummary`) and the config fields for its width.

Why a frame summary that can keep the feature map: a CNN's globally pooled feature is (nearly) translation-invariant,
so a shape moving left and one moving right give the same sequence of pooled vectors — motion is invisible in them.
`summary: flatten` projects the whole (N, D) feature map of each frame instead, which keeps where things are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from vlfuse.registry import ComponentConfig

Summary = Literal["flatten", "pooled"]


class TemporalConfig(ComponentConfig):
    """Fields every temporal module with a frame summary has."""

    dim: int = Field(128, ge=1)  # width of each frame's summary vector
    summary: Summary = "flatten"  # flatten: a projection of the frame's whole feature map; pooled: of its pooled vector


class FrameSummary(nn.Module):
    """Each frame's features → one vector (B, T, dim): a LayerNorm'd projection of its flattened feature map
    (`flatten`) or of its pooled vector (`pooled`).

    Args:
        summary: "flatten" or "pooled".
        token_dim: width D_tok of the frame's tokens.
        pooled_dim: width D of the frame's pooled vector.
        tokens_per_frame: N, the frame's token count (fixed for `flatten`).
        dim: output width.
    """

    def __init__(self, summary: Summary, *, token_dim: int, pooled_dim: int, tokens_per_frame: int, dim: int) -> None:
        super().__init__()
        self.summary = summary
        in_dim = token_dim * tokens_per_frame if summary == "flatten" else pooled_dim
        self.proj = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim))

    def forward(self, tokens: Tensor, pooled: Tensor) -> Tensor:
        """tokens (B, T, N, D_tok), pooled (B, T, D) → (B, T, dim)."""
        x = tokens.flatten(2) if self.summary == "flatten" else pooled  # (B, T, N*D_tok) or (B, T, D)
        return self.proj(x)  # (B, T, dim)


def frame_summary(cfg: TemporalConfig, *, token_dim: int, pooled_dim: int, tokens_per_frame: int) -> FrameSummary:
    return FrameSummary(cfg.summary, token_dim=token_dim, pooled_dim=pooled_dim, tokens_per_frame=tokens_per_frame,
                        dim=cfg.dim)  # fmt: skip
