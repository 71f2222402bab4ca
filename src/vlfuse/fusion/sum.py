"""Additive fusion: the pooled image and text features, each projected to a common width, summed."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor, nn

from vlfuse.layers import projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class SumConfig(ComponentConfig):
    name: Literal["sum"] = "sum"
    dim: int = Field(256, ge=1)  # width both pooled features are projected to (Linear + LayerNorm) and summed in

    tiny: ClassVar[dict[str, Any]] = {"dim": 8}  # overrides for a fast test-sized variant


@FUSIONS.register("sum", SumConfig)
class SumFusion(nn.Module):
    """LN(W_i · image.pooled) + LN(W_t · text.pooled) → (B, dim).

    The LayerNorms put both modalities on the same scale, so neither dominates the sum at the start.

    Args:
        cfg: the projection width.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: SumConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = projection(image_dim, cfg.dim)
        self.text_proj = projection(text_dim, cfg.dim)
        self.out_dim = cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "sum fusion needs both modalities"
        return self.image_proj(image.pooled) + self.text_proj(text.pooled)  # (B, dim)
