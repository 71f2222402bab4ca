"""Cross-attention fusion checked against a reference torch.nn.MultiheadAttention with copied weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlfuse.registry import FUSIONS
from vlfuse.types import EncoderOutput

B, N, L, DIM, HEADS = 3, 6, 5, 8, 2


def build(layers: int = 1):
    torch.manual_seed(0)
    cfg = FUSIONS.parse({"name": "attention", "dim": DIM, "heads": HEADS, "layers": layers}, "test")
    fusion = FUSIONS.build(cfg, image_dim=12, image_token_dim=7, text_dim=10, text_token_dim=9)
    return fusion.eval()


def inputs(image_mask: torch.Tensor | None = None) -> tuple[EncoderOutput, EncoderOutput]:
    g = torch.Generator().manual_seed(0)
    image = EncoderOutput(torch.randn(B, N, 7, generator=g), torch.randn(B, 12, generator=g), image_mask)
    text_mask = torch.arange(L) < torch.tensor([5, 2, 0]).unsqueeze(1)  # (B, L)
    return image, EncoderOutput(torch.randn(B, L, 9, generator=g), torch.randn(B, 10, generator=g), text_mask)


def reference_mha(source: nn.Module) -> nn.MultiheadAttention:
    """torch's own nn.MultiheadAttention carrying `source`'s weights (vlfuse.layers keeps its parameter layout)."""
    ref = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
    ref.load_state_dict(source.state_dict())
    return ref.eval()


def capture_attention(attn: nn.Module) -> dict[str, torch.Tensor]:
    """Record the attention sub-block's output (B, L, D) on the next forward."""
    captured: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        captured["attn"] = out

    attn.register_forward_hook(hook)
    return captured


@torch.no_grad()
def test_attention_sub_block_matches_reference_mha():
    fusion = build()
    layer = fusion.layers[0]
    image, text = inputs()
    queries = fusion.text_proj(text.tokens)  # (B, L, D)
    media = fusion.image_proj(image.tokens)  # (B, N, D)
    captured = capture_attention(layer.attn)
    fused = fusion(image, text)
    expected_attn, weights = reference_mha(layer.attn)(queries, media, media)  # text queries, image keys/values
    torch.testing.assert_close(captured["attn"], expected_attn)
    assert weights.shape == (B, L, N)
    # the rest of the layer: post-norm residual + FFN, then the masked mean over real text tokens
    x = layer.norm1(queries + expected_attn)
    x = layer.norm2(x + layer.ffn(x))
    m = text.mask.unsqueeze(-1)  # (B, L, 1)
    attended = (x * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)
    torch.testing.assert_close(fused, torch.cat([attended, fusion.pooled_proj(image.pooled)], dim=-1))
    assert torch.equal(fused[2, :DIM], torch.zeros(DIM)), "a text row without tokens averages to zeros"


@torch.no_grad()
def test_image_key_padding_matches_reference_and_is_ignored():
    fusion = build()
    image_mask = torch.arange(N) < torch.tensor([6, 4, 2]).unsqueeze(1)  # (B, N)
    image, text = inputs(image_mask)
    layer = fusion.layers[0]
    captured = capture_attention(layer.attn)
    fused = fusion(image, text)
    queries, media = fusion.text_proj(text.tokens), fusion.image_proj(image.tokens)
    expected, _ = reference_mha(layer.attn)(queries, media, media, key_padding_mask=~image_mask)
    torch.testing.assert_close(captured["attn"], expected)
    image.tokens[~image_mask] = 1e3
    torch.testing.assert_close(fusion(image, text), fused)


@torch.no_grad()
def test_image_rows_without_tokens_do_not_give_nan():
    fusion = build()
    image, text = inputs(torch.zeros(B, N, dtype=torch.bool))
    assert torch.isfinite(fusion(image, text)).all()


@pytest.mark.parametrize("layers", [1, 3])
def test_depth_and_width(layers):
    fusion = build(layers)
    image, text = inputs()
    assert len(fusion.layers) == layers and fusion.out_dim == 2 * DIM
    assert fusion(image, text).shape == (B, 2 * DIM)
