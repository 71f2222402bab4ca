"""Linear classification head: one Linear layer (the same as `mlp` with `hidden: []`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from vlfuse.registry import HEADS, ComponentConfig


class LinearConfig(ComponentConfig):
    """No options."""

    name: Literal["linear"] = "linear"

    tiny: ClassVar[dict[str, Any]] = {}  # overrides for a fast test-sized variant


@HEADS.register("linear", LinearConfig)
class LinearHead(nn.Module):
    """fused (B, F) → logits (B, K) with one Linear layer.

    Args:
        cfg: the (empty) config.
        in_dim: fused feature width F.
        num_outputs: number of logits K.
    """

    def __init__(self, cfg: LinearConfig, *, in_dim: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_outputs)

    def forward(self, fused: Tensor) -> Tensor:
        return self.linear(fused)  # (B, K)
