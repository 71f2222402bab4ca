"""Cross-attention fusion: text tokens (queries) attend over image tokens (keys/values)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vlfuse.layers import attention_blocks, masked_mean, projection
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class AttentionFusionConfig(ComponentConfig):
    """The options both attention fusions (`attention`, `cross_attention`) share: a stack of AttentionBlocks."""

    dim: int = Field(128, ge=1)  # attention width; text and image tokens are projected to it
    heads: int = Field(4, ge=1)  # attention heads; must divide dim
    layers: int = Field(1, ge=1)  # stacked attention layers (cross_attention: each updates both streams)
    mlp_ratio: float = Field(2.0, gt=0)  # feed-forward width = mlp_ratio · dim
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on attention weights and residual branches

    tiny: ClassVar[dict[str, Any]] = {"dim": 8, "heads": 2}  # overrides for a fast test-sized variant

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> AttentionFusionConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


class AttentionConfig(AttentionFusionConfig):
    name: Literal["attention"] = "attention"


@FUSIONS.register("attention", AttentionConfig)
class AttentionFusion(nn.Module):
    """Text tokens cross-attend to image tokens; out = [masked mean of attended text, projected image.pooled].

    Image tokens outside `image.mask` are masked out as keys; a row without any real image token attends over all
    of its (padded) image tokens instead. Text tokens outside `text.mask` are left out of the mean.

    Args:
        cfg: width, heads, depth.
        image_dim: width of image.pooled.
        image_token_dim: width of image.tokens.
        text_dim: width of text.pooled (unused).
        text_token_dim: width of text.tokens.
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: AttentionConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_token_dim, cfg.dim)
        self.image_proj = nn.Linear(image_token_dim, cfg.dim)
        self.pooled_proj = projection(image_dim, cfg.dim)
        self.layers = attention_blocks(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.layers)
        self.out_dim = 2 * cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "attention fusion needs both modalities"
        x = self.text_proj(text.tokens)  # (B, L, D)
        media = self.image_proj(image.tokens)  # (B, N, D)
        keys = None
        if image.mask is not None:  # samples without any image token attend over their padding (no NaN)
            keys = image.mask | ~image.mask.any(dim=1, keepdim=True)  # (B, N)
        for layer in self.layers:
            x = layer(x, media, keys)  # (B, L, D)
        attended = masked_mean(x, text.mask)  # (B, D); zeros for rows without text
        return torch.cat([attended, self.pooled_proj(image.pooled)], dim=-1)  # (B, 2D)
