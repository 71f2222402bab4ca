"""Cross-attention fusion: text tokens (queries) attend over image tokens (keys/values)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vlfuse.fusion.cross_attention import masked_mean
from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class AttentionConfig(ComponentConfig):
    name: Literal["attention"] = "attention"
    dim: int = Field(128, ge=1)  # attention width; text and image tokens are projected to it
    heads: int = Field(4, ge=1)  # attention heads; must divide dim
    layers: int = Field(1, ge=1)  # stacked cross-attention layers
    mlp_ratio: float = Field(2.0, gt=0)  # feed-forward width = mlp_ratio · dim
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on attention weights and residual branches

    tiny: ClassVar[dict[str, Any]] = {"dim": 8, "heads": 2}  # overrides for a fast test-sized variant

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> AttentionConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


class CrossAttentionLayer(nn.Module):
    """x = LN(x + MHA(x, media, media)); x = LN(x + FFN(x)) (post-norm, as in the original Transformer).

    Args:
        dim: token width.
        heads: attention heads.
        hidden: feed-forward width.
        dropout: on attention weights and residual branches.
    """

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, media: Tensor, media_padding: Tensor | None) -> Tensor:
        attended, _ = self.attn(x, media, media, key_padding_mask=media_padding, need_weights=False)  # (B, L, D)
        x = self.norm1(x + self.dropout(attended))  # (B, L, D)
        return self.norm2(x + self.dropout(self.ffn(x)))  # (B, L, D)


@FUSIONS.register("attention", AttentionConfig)
class AttentionFusion(nn.Module):
    """Text tokens cross-attend to image tokens; out = [masked mean of attended text, projected image.pooled].

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
        self.pooled_proj = nn.Sequential(nn.Linear(image_dim, cfg.dim), nn.LayerNorm(cfg.dim))
        hidden = round(cfg.dim * cfg.mlp_ratio)
        self.layers = nn.ModuleList(
            CrossAttentionLayer(cfg.dim, cfg.heads, hidden, cfg.dropout) for _ in range(cfg.layers)
        )
        self.out_dim = 2 * cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "attention fusion needs both modalities"
        x = self.text_proj(text.tokens)  # (B, L, D)
        media = self.image_proj(image.tokens)  # (B, N, D)
        padding = None
        if image.mask is not None:  # samples without any image token attend over their padding (no NaN)
            padding = ~image.mask & image.mask.any(dim=1, keepdim=True)  # (B, N)
        for layer in self.layers:
            x = layer(x, media, padding)  # (B, L, D)
        attended = masked_mean(x, text.mask)  # (B, D); zeros for rows without text
        return torch.cat([attended, self.pooled_proj(image.pooled)], dim=-1)  # (B, 2D)
