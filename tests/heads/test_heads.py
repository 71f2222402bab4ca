"""Heads: every registered one, plus the mlp/linear structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlfuse.registry import HEADS


@pytest.mark.parametrize("name", HEADS.names())
def test_registry_key_is_file_stem_and_config_name(name):
    assert HEADS.component_class(name).__module__ == f"vlfuse.heads.{name}"
    assert HEADS.config_class(name)().name == name


@pytest.mark.parametrize("num_outputs", [1, 5])
@pytest.mark.parametrize("name", HEADS.names())
def test_logit_shape_and_gradients(name, num_outputs):
    head = HEADS.build(HEADS.parse(name, "test"), in_dim=12, num_outputs=num_outputs)
    fused = torch.randn(4, 12, requires_grad=True)
    logits = head(fused)
    assert logits.shape == (4, num_outputs) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert fused.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_mlp_default_structure():
    head = HEADS.build(HEADS.parse("mlp", "test"), in_dim=12, num_outputs=3)
    assert [type(m) for m in head.net] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert head.net[0].out_features == 256 and head.net[2].p == 0.1


def test_mlp_without_hidden_layers_and_linear_are_one_linear():
    mlp = HEADS.build(HEADS.parse({"name": "mlp", "hidden": []}, "test"), in_dim=12, num_outputs=3)
    linear = HEADS.build(HEADS.parse("linear", "test"), in_dim=12, num_outputs=3)
    for head in (mlp, linear):
        layers = [m for m in head.modules() if not list(m.children())]
        assert len(layers) == 1 and isinstance(layers[0], nn.Linear)
        assert (layers[0].in_features, layers[0].out_features) == (12, 3)
