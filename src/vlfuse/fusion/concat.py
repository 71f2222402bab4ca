"""Late fusion by concatenating the pooled image and text features."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from vlfuse.layers import projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class ConcatConfig(ComponentConfig):
    name: Literal["concat"] = "concat"
    dim: int | None = Field(None, ge=1)  # project each pooled feature to dim (Linear + LayerNorm) first; None = as is

    tiny: ClassVar[dict[str, Any]] = {"dim": 8}  # overrides for a fast test-sized variant


@FUSIONS.register("concat", ConcatConfig)
class ConcatFusion(nn.Module):
    """[image.pooled, text.pooled] (each optionally projected to cfg.dim) → (B, out_dim).

    Args:
        cfg: the optional projection width.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: ConcatConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = projection(image_dim, cfg.dim)
        self.text_proj = projection(text_dim, cfg.dim)
        self.out_dim = 2 * cfg.dim if cfg.dim is not None else image_dim + text_dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "concat fusion needs both modalities"
        img = self.image_proj(image.pooled)  # (B, Di)
        txt = self.text_proj(text.pooled)  # (B, Dt)
        return torch.cat([img, txt], dim=-1)  # (B, Di+Dt)
