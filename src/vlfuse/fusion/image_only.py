"""Unimodal baseline: the pooled image feature alone (the text, if any, is ignored)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor, nn

from vlfuse.layers import projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class ImageOnlyConfig(ComponentConfig):
    name: Literal["image_only"] = "image_only"
    dim: int | None = Field(None, ge=1)  # project to dim (Linear + LayerNorm), as concat does; None = as is

    tiny: ClassVar[dict[str, Any]] = {}  # overrides for a fast test-sized variant


@FUSIONS.register("image_only", ImageOnlyConfig)
class ImageOnlyFusion(nn.Module):
    """image.pooled (optionally projected) → (B, out_dim); `text` may be None and is never read.

    Args:
        cfg: the optional projection width.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled (unused; 0 without text).
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(
        self, cfg: ImageOnlyConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.proj = projection(image_dim, cfg.dim)
        self.out_dim = cfg.dim if cfg.dim is not None else image_dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None, "image_only fusion needs an image"
        return self.proj(image.pooled)  # (B, out_dim)
