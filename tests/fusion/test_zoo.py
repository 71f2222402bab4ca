"""The fusion zoo beyond the registry-wide checks: initial states, widths, a reference attention, and learning."""

from __future__ import annotations

import pytest
import torch
from test_fusions import B, build, encoder_outputs
from test_model import xor_data
from torch import nn

from vlfuse.config import ModelConfig
from vlfuse.model import build_model
from vlfuse.types import Batch

BOTH = ("image", "text")


@torch.no_grad()
def test_gated_starts_from_the_unfused_average():
    fusion = build("gated", dim=6)
    image, text = encoder_outputs(BOTH)
    z = torch.sigmoid(fusion.gate(torch.cat([image.pooled, text.pooled], dim=-1)))  # (B, 6)
    torch.testing.assert_close(z, torch.full((B, 6), 0.5))
    unfused = 0.5 * (torch.tanh(fusion.image_proj(image.pooled)) + torch.tanh(fusion.text_proj(text.pooled)))
    torch.testing.assert_close(fusion(image, text), unfused)


def test_gated_gate_learns_from_the_first_step():
    fusion = build("gated", dim=6)
    image, text = encoder_outputs(BOTH)
    fusion(image, text).square().sum().backward()
    assert fusion.gate.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_film_is_the_identity_modulation_at_init():
    fusion = build("film", dim=6)
    image, text = encoder_outputs(BOTH)
    image.mask = torch.arange(6) < torch.tensor([6, 4, 1, 0]).unsqueeze(1)  # (B, N)
    fused = fusion(image, text)
    x = torch.relu(fusion.image_proj(image.tokens)) * image.mask.unsqueeze(-1)  # (B, N, 6)
    expected = x.sum(dim=1) / image.mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 6)
    torch.testing.assert_close(fused[:, :6], expected)
    text.pooled.normal_()  # a different text modulates nothing yet
    torch.testing.assert_close(fusion(image, text)[:, :6], expected)
    assert build("film", dim=6, with_text=False)(image, text).shape == (B, 6)


def test_tensor_width_and_unimodal_terms():
    fusion = build("tensor", dim=5)
    image, text = encoder_outputs(BOTH)
    fused = fusion(image, text)
    assert fusion.out_dim == 36 and fused.shape == (B, 36)
    outer = fused.unflatten(1, (6, 6))  # (B, dim+1, dim+1)
    torch.testing.assert_close(outer[:, -1, -1], torch.ones(B))
    torch.testing.assert_close(outer[:, :-1, -1], fusion.image_proj(image.pooled))
    torch.testing.assert_close(outer[:, -1, :-1], fusion.text_proj(text.pooled))


def test_bilinear_rows_have_unit_norm():
    fusion = build("bilinear", dim=6, factor=3).eval()
    fused = fusion(*encoder_outputs(BOTH))
    torch.testing.assert_close(fused.norm(dim=-1), torch.ones(B))


def test_sum_adds_the_projections():
    fusion = build("sum", dim=6)
    image, text = encoder_outputs(BOTH)
    torch.testing.assert_close(fusion(image, text), fusion.image_proj(image.pooled) + fusion.text_proj(text.pooled))


def test_late_weights_sum_to_one_and_the_model_outputs_logits():
    fusion = build("late")
    torch.testing.assert_close(fusion.weights, torch.tensor([0.5, 0.5]))
    fusion.mix.data = torch.tensor([1.0, -2.0])
    assert fusion.weights.sum().item() == pytest.approx(1.0) and (fusion.weights > 0).all()
    cfg = ModelConfig(image_encoder={"name": "cnn", "channels": [4]}, text_encoder="bow", fusion="late")
    sizes = {"in_channels": 3, "image_size": 8, "vocab_size": 20, "pad_id": 0, "max_length": 5}
    model = build_model(cfg, num_outputs=7, **sizes)
    assert isinstance(model.head, nn.Identity) and model.fusion.out_dim == 7
    ids = torch.randint(1, 20, (B, 5))
    assert model(Batch(torch.randn(B, 3, 8, 8), ids, ids > 0)).shape == (B, 7)


# --- cross_attention against torch.nn.MultiheadAttention -------------------------------------------------------------


def reference(attn: nn.Module, dim: int, heads: int) -> nn.MultiheadAttention:
    """torch's own nn.MultiheadAttention carrying `attn`'s q, k, v and output projections (the same layout)."""
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    ref.load_state_dict(attn.state_dict())
    return ref


@torch.no_grad()
def test_cross_attention_sub_blocks_match_reference_mha():
    fusion = build("cross_attention", dim=8, heads=2).eval()
    image, text = encoder_outputs(BOTH)  # text rows have 5, 3, 1 and 0 real tokens
    image.mask = torch.arange(6) < torch.tensor([6, 2, 4, 5]).unsqueeze(1)  # (B, N)
    t, v = fusion.text_proj(text.tokens), fusion.image_proj(image.tokens)  # (B, L, 8), (B, N, 8)
    text_attn, image_attn = fusion.text_blocks[0].attn, fusion.image_blocks[0].attn
    # text → image: every row has image tokens
    expected, _ = reference(text_attn, 8, 2)(t, v, v, key_padding_mask=~image.mask)
    torch.testing.assert_close(text_attn(t, v, image.mask), expected, atol=1e-5, rtol=1e-5)
    # image → text: the reference gives NaN for the row without text; ours gives a zero update there
    expected, _ = reference(image_attn, 8, 2)(v, t, t, key_padding_mask=~text.mask)
    got = image_attn(v, t, text.mask)
    torch.testing.assert_close(got[:3], expected[:3], atol=1e-5, rtol=1e-5)
    assert torch.equal(got[3], torch.zeros_like(got[3]))


@pytest.mark.parametrize("layers", [1, 2])
def test_cross_attention_depth_width_and_padded_images(layers):
    fusion = build("cross_attention", dim=8, heads=2, layers=layers).eval()
    image, text = encoder_outputs(BOTH)
    image.mask = torch.arange(6) < torch.tensor([6, 2, 4, 0]).unsqueeze(1)  # (B, N)
    with torch.no_grad():
        fused = fusion(image, text)
        image.tokens[~image.mask] = 1e3  # padded image tokens must not leak either
        torch.testing.assert_close(fusion(image, text), fused)
    assert len(fusion.text_blocks) == layers and fused.shape == (B, 16)
    assert torch.equal(fused[3, :8], torch.zeros(8)), "a row without text averages to zeros"


@torch.no_grad()
def test_cross_attention_loads_weights_saved_with_separate_q_k_v_projections():
    """Runs saved before vlfuse.layers hold attn.{q,k,v,out}.{weight,bias}; they load into attn.in_proj_*/out_proj."""
    fusion = build("cross_attention", dim=8, heads=2, layers=2).eval()
    image, text = encoder_outputs(BOTH)
    old = {}
    for key, value in fusion.state_dict().items():
        stem, _, name = key.rpartition(".attn.")
        if not stem:
            old[key] = value
        elif name.startswith("in_proj_"):
            kind = name.removeprefix("in_proj_")
            for proj, part in zip("qkv", value.chunk(3), strict=True):
                old[f"{stem}.attn.{proj}.{kind}"] = part
        else:
            old[f"{stem}.attn.{name.replace('out_proj.', 'out.')}"] = value
    assert "text_blocks.1.attn.q.weight" in old and "image_blocks.0.attn.out.bias" in old
    loaded = build("cross_attention", dim=8, heads=2, layers=2).eval()
    for p in loaded.parameters():
        p.zero_()
    loaded.load_state_dict(old)  # strict
    assert torch.equal(loaded(image, text), fusion(image, text))


# --- learning: a task only a fusion of both modalities solves --------------------------------------------------------

LEARNER = {  # the new fusions, sized for the task
    "sum": {"dim": 32},
    "gated": {"dim": 32},
    "bilinear": {"dim": 32, "dropout": 0.0},
    "tensor": {"dim": 8},
    "film": {"dim": 32},
    "cross_attention": {"dim": 16, "heads": 2},
    "late": {"hidden": [32], "dropout": 0.0},
}
SIZES = {"in_channels": 1, "image_size": 12, "vocab_size": 12, "pad_id": 0, "max_length": 6}


def count_data(n: int, g: torch.Generator) -> Batch:
    """The XOR images and texts, labelled instead with polarity + key ∈ {0, 1, 2}: additive, but needs both."""
    data = xor_data(n, g)
    key = (data.text_ids == 2).any(dim=1).long()  # (n,)
    data.label = (data.label ^ key) + key  # polarity + key
    return data


def train_and_score(fusion: str, train: Batch, test: Batch, num_outputs: int) -> float:
    """Test accuracy after 150 Adam steps of a tiny CNN + bag-of-words model with this fusion."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        image_encoder={"name": "cnn", "channels": [8, 16]},
        text_encoder={"name": "bow", "embed_dim": 16},
        fusion={"name": fusion, **LEARNER[fusion]},
        head={"name": "mlp", "hidden": [32], "dropout": 0.0},
    )
    model = build_model(cfg, num_outputs=num_outputs, **SIZES)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        idx = torch.randint(0, len(train), (64,), generator=g)
        batch = Batch(train.image[idx], train.text_ids[idx], train.text_mask[idx])
        loss = nn.functional.cross_entropy(model(batch), train.label[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (model.eval()(test).argmax(-1) == test.label).float().mean().item()


@pytest.fixture(scope="module")
def xor() -> tuple[Batch, Batch]:
    g = torch.Generator().manual_seed(0)
    return xor_data(2048, g), xor_data(512, g)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread, and far faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("fusion", [f for f in LEARNER if f != "late"])
def test_fusion_learns_xor_of_image_and_text(fusion, xor):
    assert train_and_score(fusion, *xor, num_outputs=2) > 0.9


@pytest.mark.usefixtures("one_thread")
def test_late_fusion_learns_additive_labels_but_not_xor(xor):
    g = torch.Generator().manual_seed(0)
    assert train_and_score("late", count_data(2048, g), count_data(512, g), num_outputs=3) > 0.9
    assert train_and_score("late", *xor, num_outputs=2) < 0.65  # logits only add: no interaction term
