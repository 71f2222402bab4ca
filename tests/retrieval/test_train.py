"""Training a dual encoder: frozen towers stay fixed (LiT), the temperature learns, configs are validated."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from tiny_configs import TINY_RETRIEVAL

from vlfuse.errors import ConfigError
from vlfuse.retrieval.model import build_dual_encoder
from vlfuse.task import validate_config
from vlfuse.train.runner import run_training


def tiny(**model):
    raw = copy.deepcopy(TINY_RETRIEVAL)
    raw["data"].update(limit=150, test_limit=40)
    raw["captions"] = {"captions_per_image": 1}
    raw["train"].update(epochs=1, batch_size=32)
    raw["model"].update(model)
    return validate_config(raw)


def test_frozen_image_tower_stays_fixed_while_the_rest_learns(tmp_path):
    cfg = tiny(freeze_image=True)
    torch.manual_seed(cfg.seed)  # the initial weights train_retrieval will build
    from vlfuse.retrieval.data import prepare_retrieval_data

    start = build_dual_encoder(cfg.model, in_channels=3, image_size=32,
                               vocab_size=prepare_retrieval_data(cfg).tokenizer.vocab_size, pad_id=0,
                               max_length=12).state_dict()  # fmt: skip
    run_training(cfg, tmp_path / "run")
    end = load_file(tmp_path / "run" / "checkpoints" / "last.safetensors")
    end = {k[len("model.") :]: v for k, v in end.items() if k.startswith("model.")}
    image_keys = [k for k in start if k.startswith("image_encoder.")]
    assert any("running_mean" in k for k in image_keys)  # batch-norm statistics are checked too
    for k in image_keys:
        assert torch.equal(start[k], end[k]), f"frozen {k} changed"
    assert not torch.equal(start["text_encoder.embed.weight"], end["text_encoder.embed.weight"])
    assert not torch.equal(start["image_proj.weight"], end["image_proj.weight"])
    assert not torch.equal(start["log_scale"], end["log_scale"])  # learnable temperature


def test_freezing_works_for_every_registered_image_encoder():
    from vlfuse.registry import IMAGE_ENCODERS
    from vlfuse.retrieval.config import DualEncoderConfig

    for name in IMAGE_ENCODERS.names():
        tiny_fields = getattr(IMAGE_ENCODERS.config_class(name), "tiny", {})
        cfg = DualEncoderConfig(image_encoder={"name": name, **tiny_fields}, text_encoder={"name": "bow"},
                                embed_dim=8, freeze_image=True)  # fmt: skip
        model = build_dual_encoder(cfg, in_channels=3, image_size=16, vocab_size=20, pad_id=0, max_length=8).train()
        assert not any(p.requires_grad for p in model.image_encoder.parameters()), name
        assert not model.image_encoder.training and model.text_encoder.training, name
        emb = model.encode_images(torch.randn(2, 3, 16, 16))  # (2, 8)
        assert emb.requires_grad and torch.allclose(emb.norm(dim=1), torch.ones(2))  # projection still trains


def test_retrieval_config_rejects_unknown_keys_and_unknown_holdout(tmp_path):
    raw = copy.deepcopy(TINY_RETRIEVAL)
    raw["model"]["fusion"] = {"name": "concat"}
    with pytest.raises(ConfigError, match=r"unknown key 'model.fusion'; valid keys here: image_encoder"):
        validate_config(raw)
    with pytest.raises(ConfigError, match=r"'task': unknown task 'retreival'"):
        validate_config({**TINY_RETRIEVAL, "task": "retreival"})
    with pytest.raises(ConfigError, match=r"captions.holdout: 'purple circle' not among the training keys"):
        run_training(tiny().model_copy(update={"captions": tiny().captions.model_copy(
            update={"holdout": ["purple circle"]})}), tmp_path / "bad")  # fmt: skip
