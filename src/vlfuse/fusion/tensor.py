"""Tensor fusion (TFN, Zadeh et al. 2017): the outer product of the pooled features, each extended with a 1."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from vlfuse.layers import projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class TensorConfig(ComponentConfig):
    name: Literal["tensor"] = "tensor"
    dim: int = Field(16, ge=1)  # width each pooled feature is projected to (Linear + LayerNorm); out = (dim+1)²
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on the flattened outer product

    tiny: ClassVar[dict[str, Any]] = {"dim": 4}  # overrides for a fast test-sized variant


@FUSIONS.register("tensor", TensorConfig)
class TensorFusion(nn.Module):
    """flatten([z_i; 1] ⊗ [z_t; 1]) → (B, (dim+1)²), z_i, z_t the projected image.pooled and text.pooled.

    The appended 1 keeps the unimodal features next to the bimodal products: in the (dim+1, dim+1) product, row
    `dim` (the last) is [z_t; 1], column `dim` is [z_i; 1], and the rest is z_i z_tᵀ. Keep `dim` small: the output
    grows as its square.

    Args:
        cfg: the projection width and dropout.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: TensorConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = projection(image_dim, cfg.dim)
        self.text_proj = projection(text_dim, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = (cfg.dim + 1) ** 2

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "tensor fusion needs both modalities"
        one = image.pooled.new_ones(image.pooled.shape[0], 1)  # (B, 1)
        z_img = torch.cat([self.image_proj(image.pooled), one], dim=-1)  # (B, dim+1)
        z_txt = torch.cat([self.text_proj(text.pooled), one], dim=-1)  # (B, dim+1)
        outer = z_img.unsqueeze(2) * z_txt.unsqueeze(1)  # (B, dim+1, dim+1)
        return self.dropout(outer.flatten(1))  # (B, (dim+1)²)
