"""Fixtures for the LLM-bridge tests: the real SmolLM2 (loaded once per session; converted once into the cache)."""

from __future__ import annotations

import pytest
import torch

from vlfuse.bridge.language_model import load_language_model
from vlfuse.bridge.model import BridgeModel, BridgeModelConfig


@pytest.fixture(scope="session")
def smollm():
    """(lm, tokenizer) of SmolLM2-135M-Instruct, frozen."""
    return load_language_model()


@pytest.fixture()
def tiny_bridge(smollm):
    """A bridge with a linear projector from 8-wide visual tokens and rank-2 LoRA adapters on a fresh LM copy."""
    import copy

    lm, tokenizer = smollm
    torch.manual_seed(0)
    cfg = BridgeModelConfig.model_validate({"projector": {"kind": "linear"}, "lora": {"rank": 2}})
    return BridgeModel(cfg, copy.deepcopy(lm), tokenizer, visual_dim=8)
