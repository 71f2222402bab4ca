"""Multiplicative fusion: the element-wise product of the projected pooled image and text features.

With a linear head this is the classic easy-VQA model, softmax(W · (img ⊙ txt) + b).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field
from torch import Tensor, nn

from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class ProductConfig(ComponentConfig):
    name: Literal["product"] = "product"
    dim: int = Field(256, ge=1)  # width both pooled features are projected to
    tanh: bool = True  # tanh after each projection (as in the classic Keras easy-VQA model)

    tiny: ClassVar[dict[str, Any]] = {"dim": 8}  # overrides for a fast test-sized variant


@FUSIONS.register("product", ProductConfig)
class ProductFusion(nn.Module):
    """act(W_i · image.pooled) ⊙ act(W_t · text.pooled) → (B, dim).

    Args:
        cfg: the projection width and activation.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens (unused).
        text_dim: width of text.pooled.
        text_token_dim: width of text.tokens (unused).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: ProductConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, cfg.dim)
        self.text_proj = nn.Linear(text_dim, cfg.dim)
        self.act = nn.Tanh() if cfg.tanh else nn.Identity()
        self.out_dim = cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "product fusion needs both modalities"
        img = self.act(self.image_proj(image.pooled))  # (B, dim)
        txt = self.act(self.text_proj(text.pooled))  # (B, dim)
        return img * txt  # (B, dim)
