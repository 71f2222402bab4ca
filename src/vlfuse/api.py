"""The Python API: train any task's config, load any run directory (or shipped run), evaluate it.

    import vlfuse
    run = vlfuse.train("configs/easy_vqa.yaml", run_dir="runs/vqa")      # a ClassifyRun
    run.predict(image="shape.png", text="what color is the shape?")
    bridge = vlfuse.load_run("easy-vqa-bridge")                           # a BridgeRun
    bridge.ask(bridge.load_images(["shape.png"]), ["what shape is this?"])
    vlfuse.evaluate("runs/vqa", split="test")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vlfuse.task import as_config, load_run, load_run_for
from vlfuse.train.runner import run_training
from vlfuse.train.trainer import Callback

__all__ = ["default_run_dir", "evaluate", "load_run", "train"]


def default_run_dir(config_path: str | Path | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    config: str | Path | BaseModel | dict,
    *,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    callbacks: list[Callback] | None = None,
    overwrite: bool = False,
) -> Any:
    """Train a config of any task (YAML path, dict or config object) and return the loaded run."""
    cfg = as_config(config, overrides)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config if isinstance(config, str | Path) else None)
    run_training(cfg, run_dir, callbacks=callbacks, overwrite=overwrite)
    return load_run(run_dir)


def evaluate(run: str | Path | Any, split: str = "test", **options: Any) -> dict[str, Any]:
    """Score a finished run (a directory, a shipped name or a loaded run) on a split of its data; `options` go to the
    task's `evaluate` (e.g. `objectives=("caption",)` for a bridge)."""
    if isinstance(run, str | Path):
        run = load_run_for(run, "evaluate")
    return run.evaluate(split, **options)
