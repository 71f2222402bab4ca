"""Shared fixtures: a tiny easy-VQA config that trains in seconds."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import yaml
from tiny_configs import TINY_CONFIGS, TINY_VQA

from vlfuse.task import TASKS


@pytest.fixture(scope="session")
def cli():
    """Run the `vlfuse` entry point (`vlfuse.cli.main`, argument parsing, error handling and exit codes included) in
    this process with ARGS…, capturing its output; returns a CompletedProcess. In-process, so a test pays no Python
    and torch start-up per command (tests/test_cli.py runs the installed command in fresh processes)."""
    from vlfuse.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        out, err = io.StringIO(), io.StringIO()
        argv = ["vlfuse", *map(str, args)]
        code = 0
        with redirect_stdout(out), redirect_stderr(err), mock.patch.object(sys, "argv", argv):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

    return run


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
            "train": {"epochs": 1, "batch_size": 16, "threads": 1, "precision": "fp32"},
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


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, cli):
    """Per task name, trained once per session on first use: (its tiny config trained by the Python API, the same
    config trained by the CLI, interrupted after one epoch and continued with `vlfuse train --resume`)."""
    runs: dict[str, tuple[Path, Path]] = {}

    def get(task: str) -> tuple[Path, Path]:
        if task not in runs:
            from vlfuse.api import train

            folder = tmp_path_factory.mktemp(task)
            config = folder / "config.yaml"
            config.write_text(yaml.safe_dump(copy.deepcopy(TINY_CONFIGS[task])))
            whole = train(config, run_dir=folder / "whole").path
            if TASKS[task].training_class.trains:
                part = cli("train", str(config), "--run-dir", str(folder / "resumed"), "--stop-after-epochs", "1")
                assert part.returncode == 0 and "stopped after epoch 1" in part.stdout, part.stderr[-3000:]
                assert not (folder / "resumed" / "run.json").exists()
                resumed = cli("train", "--resume", str(folder / "resumed"))
            else:  # nothing to interrupt: the CLI builds the same run
                resumed = cli("train", str(config), "--run-dir", str(folder / "resumed"))
            assert resumed.returncode == 0 and "run directory" in resumed.stdout, resumed.stderr[-3000:]
            runs[task] = (whole, folder / "resumed")
        return runs[task]

    return get
