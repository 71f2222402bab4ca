"""Co-attention fusion: text tokens attend over image tokens and image tokens over text tokens, in every layer."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from vlfuse.fusion.attention import AttentionFusionConfig
from vlfuse.layers import attention_blocks, masked_mean
from vlfuse.registry import FUSIONS
from vlfuse.types import EncoderOutput


class CrossAttentionConfig(AttentionFusionConfig):
    name: Literal["cross_attention"] = "cross_attention"


@FUSIONS.register("cross_attention", CrossAttentionConfig)
class CrossAttentionFusion(nn.Module):
    """Co-attention (as in ViLBERT): per layer, text attends to image and image to text, both from the previous layer.

    out = [masked mean of the attended text tokens, (masked) mean of the attended image tokens] → (B, 2·dim).
    Padding never leaks: padded tokens are masked out as keys and left out of the means, and a row without any
    real token of one modality gives the other stream a zero attention update (and a zero mean for itself).

    Args:
        cfg: width, heads, depth.
        image_dim: width of image.pooled (unused).
        image_token_dim: width of image.tokens.
        text_dim: width of text.pooled (unused).
        text_token_dim: width of text.tokens.
    """

    modalities: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(
        self, cfg: CrossAttentionConfig, *, image_dim: int, image_token_dim: int, text_dim: int, text_token_dim: int
    ) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_token_dim, cfg.dim)
        self.image_proj = nn.Linear(image_token_dim, cfg.dim)
        self.text_blocks = attention_blocks(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.layers)
        self.image_blocks = attention_blocks(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.layers)
        self.out_dim = 2 * cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "cross_attention fusion needs both modalities"
        t = self.text_proj(text.tokens)  # (B, L, D)
        v = self.image_proj(image.tokens)  # (B, N, D)
        for text_block, image_block in zip(self.text_blocks, self.image_blocks, strict=True):
            t, v = text_block(t, v, image.mask), image_block(v, t, text.mask)  # (B, L, D), (B, N, D)
        return torch.cat([masked_mean(t, text.mask), masked_mean(v, image.mask)], dim=-1)  # (B, 2D)
