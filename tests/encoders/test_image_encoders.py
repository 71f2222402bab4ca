"""Image encoders: every registered one (tiny variant) plus the exact seed_cnn architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlfuse.errors import ConfigError
from vlfuse.registry import IMAGE_ENCODERS, Registry


def tiny(registry: Registry, name: str, **overrides):
    """The component's config with its test-sized overrides (`tiny` on the config class) applied."""
    raw = {"name": name, **getattr(registry.config_class(name), "tiny", {}), **overrides}
    return registry.parse(raw, "test")


@pytest.mark.parametrize("name", IMAGE_ENCODERS.names())
def test_registry_key_is_file_stem_and_config_name(name):
    cls = IMAGE_ENCODERS.component_class(name)
    assert cls.__module__ == f"vlfuse.encoders.image.{name}"
    assert IMAGE_ENCODERS.config_class(name)().name == name


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", IMAGE_ENCODERS.names())
def test_shapes_finite_and_gradients(name, channels):
    torch.manual_seed(0)
    enc = IMAGE_ENCODERS.build(tiny(IMAGE_ENCODERS, name), in_channels=channels, image_size=16)
    out = enc(torch.randn(3, channels, 16, 16))
    assert out.pooled.shape == (3, enc.out_dim)
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == 3 and out.tokens.shape[2] == enc.token_dim
    assert out.mask is None or out.mask.shape == out.tokens.shape[:2]
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    (out.pooled.square().mean() + out.tokens.square().mean()).backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads), "every parameter should receive gradient"


@pytest.mark.parametrize("name", IMAGE_ENCODERS.names())
def test_default_config_builds_at_64px(name):
    enc = IMAGE_ENCODERS.build(IMAGE_ENCODERS.parse(name, "test"), in_channels=3, image_size=64)
    with torch.no_grad():
        out = enc.eval()(torch.randn(2, 3, 64, 64))
    assert out.pooled.shape == (2, enc.out_dim) and out.tokens.shape[2] == enc.token_dim


def test_seed_cnn_is_exactly_the_keras_example():
    enc = IMAGE_ENCODERS.build(IMAGE_ENCODERS.parse("seed_cnn", "test"), in_channels=1, image_size=28)
    layers = [type(m) for m in enc.children() if not isinstance(m, nn.Identity)]  # feature_map: a hook point only
    assert layers == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten]
    assert enc.conv.weight.shape == (32, 1, 3, 3) and enc.conv.padding == (0, 0) and enc.conv.bias is not None
    assert enc.pool.kernel_size == 2
    assert sum(p.numel() for p in enc.parameters()) == 32 * 9 + 32
    assert enc.out_dim == 13 * 13 * 32 == 5408 and enc.token_dim == 32
    x = torch.randn(2, 1, 28, 28)
    out = enc(x)
    expected = torch.max_pool2d(torch.relu(enc.conv(x)), 2)  # (2, 32, 13, 13)
    assert torch.equal(out.pooled, expected.flatten(1))
    assert out.tokens.shape == (2, 169, 32)
    assert torch.equal(out.tokens[:, 0], expected[:, :, 0, 0])


def test_seed_cnn_rejects_tiny_images():
    with pytest.raises(ConfigError, match="seed_cnn"):
        IMAGE_ENCODERS.build(IMAGE_ENCODERS.parse("seed_cnn", "test"), in_channels=1, image_size=3)


@pytest.mark.parametrize("downsample", ["stride", "pool"])
def test_cnn_options_change_widths(downsample):
    raw = {"name": "cnn", "channels": [4, 8, 12], "pool": "avgmax", "double_conv": True, "downsample": downsample}
    enc = IMAGE_ENCODERS.build(IMAGE_ENCODERS.parse(raw, "x"), in_channels=3, image_size=32)
    out = enc(torch.randn(2, 3, 32, 32))
    assert enc.token_dim == 12 and enc.out_dim == 24
    assert out.tokens.shape == (2, 4 * 4, 12) and out.pooled.shape == (2, 24)
    assert sum(isinstance(m, nn.Conv2d) for m in enc.modules()) == 6
    assert sum(isinstance(m, nn.MaxPool2d) for m in enc.modules()) == (3 if downsample == "pool" else 0)
    torch.testing.assert_close(out.pooled[:, 12:], out.tokens.amax(dim=1))


def test_cnn_too_many_stages_for_the_image_size():
    cfg = IMAGE_ENCODERS.parse({"name": "cnn", "channels": [4, 4, 4, 4, 4]}, "x")
    with pytest.raises(ConfigError, match="model.image_encoder.channels"):
        IMAGE_ENCODERS.build(cfg, in_channels=3, image_size=16)


def test_vit_checks_patch_size_and_heads():
    with pytest.raises(ConfigError, match="model.image_encoder.patch_size"):
        IMAGE_ENCODERS.build(tiny(IMAGE_ENCODERS, "vit", patch_size=5), in_channels=3, image_size=16)
    with pytest.raises(ConfigError, match="multiple of heads"):
        IMAGE_ENCODERS.parse({"name": "vit", "dim": 10, "heads": 4}, "model.image_encoder")


def test_vit_tokens_are_patches_and_pool_options():
    cls_enc = IMAGE_ENCODERS.build(tiny(IMAGE_ENCODERS, "vit"), in_channels=3, image_size=16)
    mean_enc = IMAGE_ENCODERS.build(tiny(IMAGE_ENCODERS, "vit", pool="mean"), in_channels=3, image_size=16)
    x = torch.randn(2, 3, 16, 16)
    out = cls_enc(x)
    assert out.tokens.shape == (2, 16, 16)  # (16/4)^2 patches of width 16
    mean_out = mean_enc(x)
    assert torch.allclose(mean_out.pooled, mean_out.tokens.mean(dim=1))
