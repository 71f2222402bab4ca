"""The shared building blocks: masked mean pooling and the (cross-)attention block."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlfuse.layers import AttentionBlock, MultiHeadAttention, masked_mean

B, L, N, D, HEADS = 3, 5, 6, 8, 2


def test_masked_mean_ignores_padding():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, L, D, generator=g)  # (B, L, D)
    mask = torch.arange(L) < torch.tensor([5, 2, 1]).unsqueeze(1)  # (B, L)
    expected = torch.stack([x[0].mean(0), x[1, :2].mean(0), x[2, 0]])  # (B, D)
    torch.testing.assert_close(masked_mean(x, mask), expected)
    x[~mask] = 1e6  # what stands at padded positions does not matter
    torch.testing.assert_close(masked_mean(x, mask), expected)


def test_masked_mean_without_a_mask_is_the_plain_mean():
    x = torch.randn(B, L, D)
    torch.testing.assert_close(masked_mean(x, None), x.mean(dim=1))


def test_masked_mean_of_an_all_masked_row_is_zeros_with_finite_gradients():
    x = torch.randn(B, L, D, requires_grad=True)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1] = False
    pooled = masked_mean(x, mask)  # (B, D)
    assert torch.equal(pooled[1], torch.zeros(D))
    pooled.sum().backward()
    assert torch.isfinite(pooled).all() and torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[1], torch.zeros(L, D))


def context_mask() -> torch.Tensor:
    """Rows with 6, 3 and 0 real context tokens."""
    return torch.arange(N) < torch.tensor([6, 3, 0]).unsqueeze(1)  # (B, N)


@pytest.mark.parametrize("module", ["attention", "block"])
@torch.no_grad()
def test_a_masked_context_position_cannot_change_the_output(module):
    torch.manual_seed(0)
    layer = (MultiHeadAttention(D, HEADS, 0.0) if module == "attention" else AttentionBlock(D, HEADS, 16, 0.0)).eval()
    x, context, mask = torch.randn(B, L, D), torch.randn(B, N, D), context_mask()
    out = layer(x, context, mask)
    assert out.shape == (B, L, D) and torch.isfinite(out).all()
    changed = context.clone()
    changed[~mask] = 1e4 * torch.randn(int((~mask).sum()), D)  # only masked positions change
    torch.testing.assert_close(layer(x, changed, mask), out, rtol=0, atol=0)
    changed[0, 0] += 1.0  # a real position does change it
    assert not torch.allclose(layer(x, changed, mask)[0], out[0])


@torch.no_grad()
def test_attention_matches_torch_and_gives_no_update_without_keys():
    torch.manual_seed(0)
    attn = MultiHeadAttention(D, HEADS, 0.0).eval()
    ref = nn.MultiheadAttention(D, HEADS, batch_first=True).eval()
    ref.load_state_dict(attn.state_dict())  # the same parameter layout as torch's
    x, context, mask = torch.randn(B, L, D), torch.randn(B, N, D), context_mask()
    got = attn(x, context, mask)  # (B, L, D)
    expected, _ = ref(x, context, context, key_padding_mask=~mask)  # NaN for the row without keys
    torch.testing.assert_close(got[:2], expected[:2], atol=1e-5, rtol=1e-5)
    assert torch.equal(got[2], torch.zeros(L, D)), "a row without context tokens gets a zero update"
    torch.testing.assert_close(attn(x, context, None), ref(x, context, context)[0], atol=1e-5, rtol=1e-5)


def test_attention_initialises_like_torch():
    torch.manual_seed(0)
    ours = MultiHeadAttention(D, HEADS, 0.0).state_dict()
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(D, HEADS, batch_first=True).state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_heads_must_divide_dim():
    with pytest.raises(ValueError, match="multiple of heads"):
        MultiHeadAttention(6, 4, 0.0)
