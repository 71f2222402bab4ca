"""Co-attention fusion: text tokens attend over image tokens and image tokens over text tokens, in every layer."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vlfuse.registry import FUSIONS, ComponentConfig
from vlfuse.types import EncoderOutput


class CrossAttentionConfig(ComponentConfig):
    name: Literal["cross_attention"] = "cross_attention"
    dim: int = Field(128, ge=1)  # attention width; text and image tokens are projected to it
    heads: int = Field(4, ge=1)  # attention heads; must divide dim
    layers: int = Field(1, ge=1)  # stacked co-attention layers, each updating both streams
    mlp_ratio: float = Field(2.0, gt=0)  # feed-forward width = mlp_ratio · dim
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on attention weights and residual branches

    tiny: ClassVar[dict[str, Any]] = {"dim": 8, "heads": 2}  # overrides for a fast test-sized variant

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> CrossAttentionConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of x (B, T, D) over the tokens where mask (B, T) is True; zeros for rows without any."""
    if mask is None:
        return x.mean(dim=1)  # (B, D)
    m = mask.unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B, D)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention of queries over a context, with a key mask.

    Computes what nn.MultiheadAttention(dim, heads, batch_first=True) does with key_padding_mask = ~context_mask,
    except that the queries of a row without any real key get zeros (no update) instead of NaN.

    Args:
        dim: token width (queries, keys, values and output).
        heads: attention heads; must divide dim.
        dropout: on the attention weights.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        q = self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, L, d)
        k = self.k(context).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        v = self.v(context).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, h, L, N)
        if context_mask is None:
            weights = scores.softmax(dim=-1)  # (B, h, L, N)
        else:
            keep = context_mask[:, None, None, :]  # (B, 1, 1, N)
            weights = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(dim=-1) * keep  # (B, h, L, N)
        attended = self.dropout(weights) @ v  # (B, h, L, d)
        out = self.out(attended.transpose(1, 2).flatten(2))  # (B, L, D)
        return out if context_mask is None else out * context_mask.any(dim=1)[:, None, None]  # no keys: zeros


class AttentionBlock(nn.Module):
    """x = LN(x + MHA(x, context)); x = LN(x + FFN(x)) (post-norm, as in the original Transformer).

    Args:
        dim: token width.
        heads: attention heads.
        hidden: feed-forward width.
        dropout: on attention weights and residual branches.
    """

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        x = self.norm1(x + self.dropout(self.attn(x, context, context_mask)))  # (B, L, D)
        return self.norm2(x + self.dropout(self.ffn(x)))  # (B, L, D)


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
        hidden = round(cfg.dim * cfg.mlp_ratio)
        self.text_blocks = nn.ModuleList(
            AttentionBlock(cfg.dim, cfg.heads, hidden, cfg.dropout) for _ in range(cfg.layers)
        )
        self.image_blocks = nn.ModuleList(
            AttentionBlock(cfg.dim, cfg.heads, hidden, cfg.dropout) for _ in range(cfg.layers)
        )
        self.out_dim = 2 * cfg.dim

    def forward(self, image: EncoderOutput | None, text: EncoderOutput | None) -> Tensor:
        assert image is not None and text is not None, "cross_attention fusion needs both modalities"
        t = self.text_proj(text.tokens)  # (B, L, D)
        v = self.image_proj(image.tokens)  # (B, N, D)
        for text_block, image_block in zip(self.text_blocks, self.image_blocks, strict=True):
            t, v = text_block(t, v, image.mask), image_block(v, t, text.mask)  # (B, L, D), (B, N, D)
        return torch.cat([masked_mean(t, text.mask), masked_mean(v, image.mask)], dim=-1)  # (B, 2D)
