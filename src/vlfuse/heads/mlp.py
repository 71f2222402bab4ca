"""MLP classification head: [Linear → ReLU → Dropout] per hidden width, then Linear to the outputs."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from vlfuse.registry import HEADS, ComponentConfig


class MLPConfig(ComponentConfig):
    name: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = [256]  # hidden layer widths; [] = a single Linear
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # after each hidden layer

    tiny: ClassVar[dict[str, Any]] = {"hidden": [8]}  # overrides for a fast test-sized variant


@HEADS.register("mlp", MLPConfig)
class MLPHead(nn.Module):
    """fused (B, F) → logits (B, K).

    Args:
        cfg: hidden widths and dropout.
        in_dim: fused feature width F.
        num_outputs: number of logits K.
    """

    def __init__(self, cfg: MLPConfig, *, in_dim: int, num_outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for out in cfg.hidden:
            layers += [nn.Linear(width, out), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            width = out
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, fused: Tensor) -> Tensor:
        return self.net(fused)  # (B, K)
