"""Fusions: every registered one (tiny variant) on synthetic encoder outputs, with padded and empty text rows."""

from __future__ import annotations

import pytest
import torch

from vlfuse.registry import FUSIONS, Registry
from vlfuse.types import EncoderOutput

B, N, L = 4, 6, 5
DIMS = {"image_dim": 12, "image_token_dim": 7, "text_dim": 10, "text_token_dim": 9}
K = 3  # num_outputs, passed only to fusions that produce the logits themselves (late)


def tiny(registry: Registry, name: str, **overrides):
    """The component's config with its test-sized overrides (`tiny` on the config class) applied."""
    raw = {"name": name, **getattr(registry.config_class(name), "tiny", {}), **overrides}
    return registry.parse(raw, "test")


def encoder_outputs(modalities: tuple[str, ...]) -> tuple[EncoderOutput | None, EncoderOutput | None]:
    """Leaf tensors standing in for encoder outputs; text rows have 5, 3, 1 and 0 real tokens."""
    g = torch.Generator().manual_seed(0)
    image = text = None
    if "image" in modalities:
        image = EncoderOutput(
            tokens=torch.randn(B, N, DIMS["image_token_dim"], generator=g).requires_grad_(),
            pooled=torch.randn(B, DIMS["image_dim"], generator=g).requires_grad_(),
        )
    if "text" in modalities:
        mask = torch.arange(L) < torch.tensor([5, 3, 1, 0]).unsqueeze(1)  # (B, L)
        text = EncoderOutput(
            tokens=torch.randn(B, L, DIMS["text_token_dim"], generator=g).requires_grad_(),
            pooled=torch.randn(B, DIMS["text_dim"], generator=g).requires_grad_(),
            mask=mask,
        )
    return image, text


def derived_dims(name: str) -> dict[str, int]:
    """The synthetic widths, 0 for the modalities the fusion does not read, and num_outputs to a fusion that
    produces logits (all as build_model passes them)."""
    cls = FUSIONS.component_class(name)
    dims = {k: (v if k.split("_")[0] in cls.modalities else 0) for k, v in DIMS.items()}
    return {**dims, "num_outputs": K} if getattr(cls, "produces_logits", False) else dims


def build(name: str, **overrides):
    torch.manual_seed(0)
    return FUSIONS.build(tiny(FUSIONS, name, **overrides), **derived_dims(name))


@pytest.mark.parametrize("name", FUSIONS.names())
def test_registry_key_is_file_stem_and_config_name(name):
    cls = FUSIONS.component_class(name)
    assert cls.__module__ == f"vlfuse.fusion.{name}"
    assert FUSIONS.config_class(name)().name == name
    assert set(cls.modalities) <= {"image", "text"} and cls.modalities


@pytest.mark.parametrize("name", FUSIONS.names())
def test_shape_finite_and_gradients_reach_every_used_modality(name):
    fusion = build(name)
    image, text = encoder_outputs(fusion.modalities)
    fused = fusion(image, text)
    assert fused.shape == (B, fusion.out_dim)
    assert fusion.out_dim == K or not getattr(fusion, "produces_logits", False)
    assert torch.isfinite(fused).all()
    fused.square().sum().backward()
    for out in (image, text):
        if out is None:
            continue
        grads = [t.grad for t in (out.tokens, out.pooled) if t.grad is not None]
        assert grads, f"{name} reads nothing of a modality it declares"
        assert all(torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    for p in fusion.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", FUSIONS.names())
def test_text_padding_is_ignored(name):
    fusion = build(name).eval()
    image, text = encoder_outputs(fusion.modalities)
    with torch.no_grad():
        before = fusion(image, text)
        if text is not None:
            text.tokens[~text.mask] = 1e3  # garbage at padded positions must not leak into the result
        after = fusion(image, text)
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_default_config_builds(name):
    fusion = FUSIONS.build(FUSIONS.parse(name, "test"), **derived_dims(name))
    assert fusion(*encoder_outputs(fusion.modalities)).shape == (B, fusion.out_dim)


@pytest.mark.parametrize("name", ["image_only", "text_only"])
def test_unimodal_baselines_accept_none_for_the_other_modality(name):
    fusion = build(name)
    image, text = encoder_outputs(fusion.modalities)
    assert (image is None) != (text is None)
    assert fusion(image, text).shape == (B, fusion.out_dim)


def test_concat_widths():
    assert build("concat", dim=None).out_dim == DIMS["image_dim"] + DIMS["text_dim"]
    fusion = build("concat", dim=6)
    image, text = encoder_outputs(("image", "text"))
    assert fusion(image, text).shape == (B, 12) and fusion.out_dim == 12


def test_product_is_the_elementwise_product_of_projections():
    fusion = build("product", dim=6, tanh=False)
    image, text = encoder_outputs(("image", "text"))
    expected = fusion.image_proj(image.pooled) * fusion.text_proj(text.pooled)  # (B, 6)
    torch.testing.assert_close(fusion(image, text), expected)
