"""Shared fixtures: a tiny easy-VQA config that trains in seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_configs import TINY_VQA


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    torch.set_num_threads(1)
    return copy.deepcopy(TINY_VQA)


@pytest.fixture
def tiny_table(tmp_path):
    """A CSV table of coloured squares/circles with questions, optionally with two bad rows."""
    import numpy as np
    from PIL import Image, ImageDraw

    def make(bad_rows: bool = False):
        rng = np.random.default_rng(0)
        rows = []
        for i in range(60):
            colour = ["red", "blue"][i % 2]
            img = Image.new("RGB", (32, 32), "white")
            ImageDraw.Draw(img).rectangle([8, 8, 24, 24], fill=colour)
            img.save(tmp_path / f"img{i}.png")
            rows.append({"image": f"img{i}.png", "text": "what color is it", "label": colour})
        if bad_rows:
            rows.append({"image": "missing.png", "text": "what color", "label": "red"})
            rows.append({"image": "img0.png", "text": "", "label": "red"})
        rng.shuffle(rows)
        import pandas as pd

        pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
        return {
            "data": {"name": "table", "path": str(tmp_path / "table.csv"), "image_size": 32, "on_error": "skip"},
            "model": {
                "image_encoder": {"name": "cnn", "channels": [8]},
                "text_encoder": {"name": "bow"},
                "fusion": {"name": "concat"},
                "head": {"name": "linear"},
            },
            "train": {"epochs": 1, "batch_size": 16, "threads": 1},
        }

    return make


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """A tiny easy-VQA run, trained once per session (1 epoch, with modality dropout so either input may be missing);
    shared by the serving and export tests."""
    from vlfuse.api import train

    torch.set_num_threads(1)
    config = copy.deepcopy(TINY_VQA)
    config["train"]["epochs"] = 1
    config["model"]["modality_dropout"] = 0.15
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    train(config, run_dir=run_dir)
    return run_dir
