"""Unimodal baseline: the pooled text feature alone (the image, if any, is ignored)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor, nn

from vlfuse.layers import projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class TextOnlyConfig(ComponentConfig):
    name: Literal["text_only"] = "text_only"
    dim: int | None = Field(None, ge=1)  # project to dim (Linear + LayerNorm), as concat does; None = as is

    tiny: ClassVar[dict[str, Any]] = {}  # overrides for a fast test-sized variant


@FUSIONS.register("text_only", TextOnlyConfig)
class TextOnlyFusion(nn.Module):
    """text.pooled (optionally projected) → (B, out_dim); `image` may be None and is never read.

    Args:
        cfg: the optional projection width.
        image_dim: width of image.pooled (unused; 0 without images).
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self, cfg: TextOnlyConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.proj = projection(text_dim, cfg.dim)
        self.out_dim = cfg.dim if cfg.dim is not None else text_dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert text is not None, "text_only fusion needs text"
        return self.proj(text.pooled)  # (B, out_dim)
