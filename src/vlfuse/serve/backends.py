"""Prediction backends behind the server: the PyTorch run (`torch`) or its ONNX export (`onnx`, `onnx-int8`), and
`auto` (the default), which picks the faster one that is known to give the same answers.

Both take decoded images ((C, H, W) uint8 at the model's size, or None) and texts (or None) and return
probabilities; the server does not care which one it holds.

`auto`: onnxruntime runs the classifiers several times faster than PyTorch at the batch sizes a server sees (see
benchmarks/results/onnx_export.json). A run's export in `<run>/onnx/` is used when it was made from the run's current
weights (their SHA-256 is recorded at export time); otherwise the run is exported there on this first start —
`export_onnx` keeps a graph only after it reproduces the PyTorch logits on verification batches. A run that cannot
be exported (a task whose runs have no export, such as moderate and video runs; an operator without an ONNX form; a
read-only run directory) is served with PyTorch, and the reason is logged and shown in /v1/info.
"""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import torch

from vlfuse.classify.run import ClassifyRun
from vlfuse.errors import CheckpointError, VLFuseError
from vlfuse.task import RunRef, load_run_for, resolve_run

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


class Predictor(Protocol):
    """What the server needs from a model."""

    backend: str
    label_names: list[str]
    objective: str  # multiclass, binary or multilabel
    image_size: int | None  # None when the model reads no images
    channels: int | None
    reads_image: bool  # True for a video run too: its image side is a clip (see reads_video)
    reads_text: bool
    reads_video: bool  # a video run: the image side takes clips (F, C, S, S) uint8, not images
    missing_modalities: bool  # a model reading both can do with either alone
    path: Path

    def predict_proba(self, images: list[torch.Tensor | None], texts: list[str | None]) -> torch.Tensor:
        """(B, num_labels) probabilities; `images` holds (C, H, W) images, or (F, C, S, S) clips for a video run."""
        ...

    def describe(self) -> dict[str, Any]:
        """Model facts for /v1/info: architecture, metrics, versions."""
        ...


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the given distributions (those not installed are left out), plus Python's."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class TorchPredictor:
    """A loaded run directory, predicting with PyTorch.

    Args:
        run: the loaded run.
    """

    backend = "torch"

    def __init__(self, run: ClassifyRun, *, why: str = "the torch backend was asked for") -> None:
        self.run = run
        self.why = why
        self.task = run.task  # "classify", "moderate" (whose probabilities are calibrated) or "video" (clips)
        self.path = run.path
        self.label_names = run.label_names
        self.objective = run.objective.kind
        model = run.model
        self.reads_image = model.image_encoder is not None
        self.reads_text = model.text_encoder is not None
        self.reads_video = run.task == "video"
        self.missing_modalities = model.placeholders is not None
        self.image_size = run.cfg.data.image_size if self.reads_image else None  # a video run's frame side
        self.channels = run.cfg.data.channels if self.reads_image else None

    def predict_proba(self, images: list[torch.Tensor | None], texts: list[str | None]) -> torch.Tensor:
        return self.run.predict_proba(images, texts)  # (B, K)

    def describe(self) -> dict[str, Any]:
        placeholders = self.run.model.placeholders
        return {
            "metrics": self.run.metrics,
            "model": self.run.cfg.model.model_dump(mode="json"),
            "placeholders_learned": bool(placeholders is not None and placeholders.learned),
            "backend_why": self.why,
            "versions": package_versions("vlfuse", "torch", "fastapi", "uvicorn"),
        }


class OnnxPredictor:
    """An ONNX export of a run, predicting with onnxruntime.

    Args:
        path: an export folder, or a run directory whose `onnx/` holds one.
        int8: use the int8-quantised graph.
    """

    def __init__(self, path: str | Path, *, int8: bool = False, why: str = "the onnx backend was asked for") -> None:
        from vlfuse.export.runtime import OnnxModel

        self.model = OnnxModel(path, int8=int8)
        self.why = why
        self.backend = "onnx-int8" if int8 else "onnx"
        self.path = self.model.path
        self.label_names = self.model.label_names
        self.objective = self.model.objective
        self.reads_image = self.model.reads_image
        self.reads_text = self.model.reads_text
        self.reads_video = False  # video runs have no ONNX export
        self.missing_modalities = self.model.missing_modalities
        image = self.model.meta["image"]
        self.image_size = image["size"] if image else None
        self.channels = image["channels"] if image else None

    def predict_proba(self, images: list[torch.Tensor | None], texts: list[str | None]) -> torch.Tensor:
        return self.model.predict_proba(images, texts)  # (B, K)

    def describe(self) -> dict[str, Any]:
        meta = self.model.meta
        return {
            "metrics": meta["metrics"],
            "model": meta["model_config"],
            "placeholders_learned": meta["placeholders_learned"],
            "onnx_file": self.model.model_file,
            "backend_why": self.why,
            "versions": package_versions("vlfuse", "onnxruntime", "onnx", "fastapi", "uvicorn"),
        }


def load_predictor(path: str | Path | RunRef, backend: str = "auto") -> Predictor:
    """A predictor for a run directory (or an ONNX export folder with the onnx and auto backends).

    Raises:
        ValueError: unknown backend.
        CheckpointError: the run or export is missing or incomplete.
    """
    if backend == "auto":
        return auto_predictor(path)
    if backend == "torch":
        return TorchPredictor(load_run_for(path, "predict"))
    if backend in ("onnx", "onnx-int8"):
        return OnnxPredictor(path.path if isinstance(path, RunRef) else path, int8=backend == "onnx-int8")
    raise ValueError(f"unknown backend '{backend}'; expected one of {', '.join(BACKENDS)}")


def auto_predictor(path: str | Path | RunRef) -> Predictor:
    """onnxruntime on an export made from the run's current weights (exporting it on first use), else PyTorch."""
    from vlfuse.export.format import RUN_EXPORT_DIR, current_export
    from vlfuse.export.onnx import export_onnx

    try:
        ref = resolve_run(path)
    except CheckpointError:
        if isinstance(path, RunRef):
            raise
        return OnnxPredictor(path, why="an ONNX export folder")  # not a run: an export, or its loader says why not
    if "export" not in ref.task.operations:
        return TorchPredictor(load_run_for(ref, "predict"), why=f"'{ref.task.name}' runs have no ONNX export")
    ref.task.require("predict", ref.path)
    export_dir = current_export(ref.path)
    if export_dir is not None:  # the PyTorch model is not needed at all
        return OnnxPredictor(export_dir, why=f"the export in {export_dir} matches the run's weights")
    export_dir, run = ref.path / RUN_EXPORT_DIR, load_run_for(ref, "predict")
    try:
        export_onnx(run, export_dir)
    except (VLFuseError, OSError) as err:  # ExportError (no ONNX form, parity failed), or a read-only run directory
        log.warning("serving %s with PyTorch: no ONNX export could be made (%s)", ref.path, err)
        return TorchPredictor(run, why=f"ONNX export failed: {err}")
    log.info("exported %s to %s for serving (verified against PyTorch)", ref.path, export_dir)
    return OnnxPredictor(export_dir, why=f"exported on first start to {export_dir}, verified against PyTorch")
