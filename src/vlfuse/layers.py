"""Building blocks shared by the fusions and encoders.

- `masked_mean`: mean pooling over the real tokens of a padded sequence.
- `projection`: Linear + LayerNorm to a common width (or the identity).
- `MultiHeadAttention`, `AttentionBlock`, `attention_blocks`: the one (cross-)attention layer of the attention fusions.
- `encoder_layers`: the pre-norm self-attention stacks of the ViT and the Transformer text encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of the tokens of `x` where `mask` is True.

    Args:
        x: (B, T, D) tokens.
        mask: (B, T), True for real tokens; None means every token is real.

    Returns:
        (B, D); zeros (never NaN) for rows without any real token.
    """
    if mask is None:
        return x.mean(dim=1)  # (B, D)
    m = mask.unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B, D)


def projection(in_dim: int, dim: int | None) -> nn.Module:
    """Linear + LayerNorm from `in_dim` to `dim`, or the identity when `dim` is None.

    Args:
        in_dim: input width.
        dim: output width; None keeps the input as it is.

    Returns:
        a module mapping (..., in_dim) to (..., dim), or to (..., in_dim) unchanged.
    """
    return nn.Identity() if dim is None else nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim))


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention of queries over a context, with a mask of the real context tokens.

    Computes what nn.MultiheadAttention(dim, heads, batch_first=True) does with key_padding_mask = ~context_mask,
    with its parameter names (`in_proj_weight` = [W_q; W_k; W_v], `in_proj_bias`, `out_proj`) and initialisation,
    except that the queries of a row without any real context token get zeros (no update) instead of NaN.
    Weights saved with separate `q`, `k`, `v`, `out` Linears (the cross_attention fusion before this module) load too.

    Args:
        dim: token width of queries, context and output.
        heads: attention heads; must divide dim.
        dropout: on the attention weights.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))  # (3D, D)
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))  # (3D,)
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention, in the same order (same RNG draws)
        nn.init.zeros_(self.out_proj.bias)
        self.dropout = nn.Dropout(dropout)
        self.register_load_state_dict_pre_hook(_pack_separate_projections)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        """Attend from `x` (B, L, D) over `context` (B, N, D) where `context_mask` (B, N) is True → (B, L, D)."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)  # (D, D) each
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)  # (D,) each
        q = F.linear(x, w_q, b_q).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, L, d)
        k = F.linear(context, w_k, b_k).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        v = F.linear(context, w_v, b_v).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, h, L, N)
        if context_mask is None:
            weights = scores.softmax(dim=-1)  # (B, h, L, N)
        else:
            keep = context_mask[:, None, None, :]  # (B, 1, 1, N)
            weights = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(dim=-1) * keep  # (B, h, L, N)
        attended = self.dropout(weights) @ v  # (B, h, L, d)
        out = self.out_proj(attended.transpose(1, 2).flatten(2))  # (B, L, D)
        return out if context_mask is None else out * context_mask.any(dim=1)[:, None, None]  # no keys: zeros


def _pack_separate_projections(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
    """Load hook: weights saved with separate q, k, v, out Linears are packed into in_proj_* and out_proj.*."""
    if prefix + "q.weight" not in state_dict:
        return
    for kind in ("weight", "bias"):
        packed = torch.cat([state_dict.pop(f"{prefix}{p}.{kind}") for p in "qkv"])  # (3D, D) or (3D,)
        state_dict[f"{prefix}in_proj_{kind}"] = packed
        state_dict[f"{prefix}out_proj.{kind}"] = state_dict.pop(f"{prefix}out.{kind}")


class AttentionBlock(nn.Module):
    """x = LN(x + MHA(x, context)); x = LN(x + FFN(x)) (post-norm, as in the original Transformer).

    Args:
        dim: token width.
        heads: attention heads; must divide dim.
        hidden: feed-forward width.
        dropout: on the attention weights and the residual branches.
    """

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        """Update `x` (B, L, D) from `context` (B, N, D) where `context_mask` (B, N) is True → (B, L, D)."""
        x = self.norm1(x + self.dropout(self.attn(x, context, context_mask)))  # (B, L, D)
        return self.norm2(x + self.dropout(self.ffn(x)))  # (B, L, D)


def attention_blocks(dim: int, heads: int, mlp_ratio: float, dropout: float, depth: int) -> nn.ModuleList:
    """`depth` post-norm AttentionBlocks, with feed-forward width round(mlp_ratio · dim)."""
    hidden = round(dim * mlp_ratio)
    return nn.ModuleList(AttentionBlock(dim, heads, hidden, dropout) for _ in range(depth))


def encoder_layers(dim: int, heads: int, mlp_ratio: float, dropout: float, depth: int) -> nn.ModuleList:
    """`depth` pre-norm self-attention layers (torch's nn.TransformerEncoderLayer, GELU), batch first.

    Args:
        dim: token width.
        heads: attention heads; must divide dim.
        mlp_ratio: feed-forward width = round(mlp_ratio · dim).
        dropout: inside the layers.
        depth: number of layers.

    Returns:
        the layers, each mapping (B, T, D) to (B, T, D).
    """
    return nn.ModuleList(
        nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=round(dim * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        for _ in range(depth)
    )
