"""A tiny trained video run (the tests' TINY_VIDEO, ~4 s) and clip files of its own test split, for the serving tests
of video runs; the run is trained once per session, whichever test module asks first."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from tiny_configs import TINY_VIDEO

_RUNS: dict[str, Path] = {}


def tiny_video_run_dir(tmp_path_factory) -> Path:
    """The run directory of TINY_VIDEO trained by the Python API (once per session)."""
    if "video" not in _RUNS:
        from vlfuse.api import train

        torch.set_num_threads(1)
        run_dir = tmp_path_factory.mktemp("video-run") / "run"
        train(copy.deepcopy(TINY_VIDEO), run_dir=run_dir)
        _RUNS["video"] = run_dir
    return _RUNS["video"]


def write_test_clip(run, path: Path, row: int = 0, fps: float = 5.0) -> tuple[Path, str]:
    """Row `row` of the run's test split written as a clip file (container and codec from the suffix): (the file,
    the row's question)."""
    from vlfuse.data.video import write_video

    split = run.split_data("test")
    frames = split.images[row].permute(0, 2, 3, 1).numpy()  # (F, C, S, S) -> (F, S, S, C) uint8
    write_video(path, frames, fps=fps)
    return path, split.texts[row]
