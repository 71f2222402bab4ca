"""Runs with random weights for every registered component (no training): shared by the export and explain tests."""

import copy

import torch
from tiny_configs import TINY_VQA

from vlfuse.classify.run import ClassifyRun, build_classifier
from vlfuse.classify.task import pretrained_tokenizer_for
from vlfuse.data.text import TextTokenizer
from vlfuse.objective import Objective
from vlfuse.registry import FUSIONS, IMAGE_ENCODERS, TEXT_ENCODERS
from vlfuse.task import validate_config


def tiny_component(registry, name: str) -> dict:
    return {"name": name, **getattr(registry.config_class(name), "tiny", {})}


def random_run(tmp_path, image: str, text: str, fusion: str) -> ClassifyRun:
    """A run with random weights for one combination of registered components (no training needed to export)."""
    config = copy.deepcopy(TINY_VQA)
    config["data"]["image_size"] = 16
    config["model"] = {
        "image_encoder": tiny_component(IMAGE_ENCODERS, image),
        "text_encoder": tiny_component(TEXT_ENCODERS, text),
        "fusion": tiny_component(FUSIONS, fusion),
        "head": {"name": "mlp", "hidden": [8]},
        "modality_dropout": 0.1,
    }
    cfg = validate_config(config)
    tokenizer = pretrained_tokenizer_for(cfg) or TextTokenizer.train(  # minilm reads its own vocabulary
        ["what color is the shape", "is there a red circle", "what shape"], max_length=12
    )
    torch.manual_seed(0)
    model = build_classifier(cfg, tokenizer, num_outputs=4).eval()
    return ClassifyRun(tmp_path, cfg, Objective("multiclass", 4), ["a", "b", "c", "d"], model, tokenizer)


def combos() -> list[tuple[str, str, str]]:
    """Every fusion (with cnn + bow) and every image and text encoder (with product fusion)."""
    out = {("cnn", "bow", f) for f in FUSIONS.names()}
    out |= {(i, "bow", "product") for i in IMAGE_ENCODERS.names()}
    out |= {("cnn", t, "product") for t in TEXT_ENCODERS.names()}
    return sorted(out)
