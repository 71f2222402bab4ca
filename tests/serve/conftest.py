"""Fixtures for the bridge and search endpoints: a real (untrained) language bridge run directory and a tiny trained
retrieval run with index files, each built once per session."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from tiny_configs import TINY_CONFIGS, TINY_RETRIEVAL

from vlfuse.errors import MissingPackageError

# A bridge as `vlfuse train` would write one, but with freshly initialised projector and adapters: the LM is real
# (SmolLM2), so answers are real generated text, though not about the image.
TINY_BRIDGE = {  # the tests' tiny bridge with one question stage and longer answers
    **{k: v for k, v in TINY_CONFIGS["bridge"].items() if k not in ("train", "eval")},
    "stages": [{"objective": "vqa"}],
    "generation": {"max_new_tokens": 6},
}


@pytest.fixture(scope="session")
def tiny_bridge_dir(tmp_path_factory) -> Path:
    """config.yaml + bridge.safetensors of an untrained bridge; skips when SmolLM2's weights package is absent."""
    from vlfuse.bridge.config import BridgeConfig
    from vlfuse.bridge.run import build_bridge
    from vlfuse.config import save_config
    from vlfuse.train.checkpoint import save_model_weights

    torch.manual_seed(0)
    cfg = BridgeConfig.model_validate(TINY_BRIDGE)
    try:
        model, _ = build_bridge(cfg)
    except MissingPackageError as err:
        pytest.skip(f"the language bridge needs its pretrained parts: {err}")
    run_dir = tmp_path_factory.mktemp("bridge") / "run"
    run_dir.mkdir()
    save_config(cfg, run_dir / "config.yaml")
    save_model_weights(model, run_dir / "bridge.safetensors", {"format": "vlfuse-bridge"})
    return run_dir


@pytest.fixture(scope="session")
def tiny_bridge(tiny_bridge_dir):
    """The bridge run directory loaded the way the server loads it (LM loaded once, shared by the servers)."""
    from vlfuse.task import load_run

    return load_run(tiny_bridge_dir)


@dataclass
class SearchFiles:
    run_dir: Path  # a trained retrieval run
    image_index: Path  # three files of mine (red.png, blue.png, wide.png), then easy-vqa:test appended
    text_index: Path  # the lines of captions.txt
    images: dict[str, Path]  # name → file in the image index
    captions: list[str]


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory) -> SearchFiles:
    """A dual encoder trained for one short epoch on easy-VQA, and index files built with `build_index` as
    `vlfuse index` builds them."""
    from vlfuse.retrieval.search import build_index
    from vlfuse.task import load_run, validate_config
    from vlfuse.train.runner import run_training

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("search")
    raw = copy.deepcopy(TINY_RETRIEVAL)
    raw["data"].update(limit=150, test_limit=40)
    raw["captions"] = {"captions_per_image": 1}
    raw["train"].update(epochs=1, batch_size=32)
    run_training(validate_config(raw), tmp / "run")
    run = load_run(tmp / "run")

    folder = tmp / "mine"
    folder.mkdir()
    images = {"red": folder / "red.png", "blue": folder / "blue.png", "wide": folder / "wide.png"}
    Image.new("RGB", (40, 40), "red").save(images["red"])
    Image.new("RGB", (40, 40), "blue").save(images["blue"])
    wide = Image.new("RGB", (600, 300), "white")
    ImageDraw.Draw(wide).ellipse([200, 50, 400, 250], fill="green")
    wide.save(images["wide"])
    build_index(run, str(folder), tmp / "images.index")
    build_index(run, "easy-vqa:test", tmp / "images.index", append=True)

    captions = ["a red circle", "a blue rectangle", "a green triangle", "a yellow circle", "a gray rectangle"]
    (tmp / "captions.txt").write_text("\n".join(captions) + "\n")
    build_index(run, str(tmp / "captions.txt"), tmp / "texts.index", texts=True)
    return SearchFiles(tmp / "run", tmp / "images.index", tmp / "texts.index", images, captions)
