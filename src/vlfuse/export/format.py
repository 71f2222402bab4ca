"""The ONNX export folder's layout and freshness, without torch: file names, the format tag, and whether an export
was made from a run's present weights (the SHA-256 of its weights file is recorded at export time)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vlfuse.classify import WEIGHTS

FORMAT = "vlfuse-onnx"
FORMAT_VERSION = 1
METADATA_FILE = "preprocess.json"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
DIGEST_KEY = "source_weights_sha256"
RUN_EXPORT_DIR = "onnx"  # a run's default export folder, `<run>/onnx`


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file (None when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def export_is_current(export_dir: str | Path, weights: str | Path) -> bool:
    """Whether `export_dir` holds a complete export made from the weights file `weights` as it is now."""
    export_dir = Path(export_dir)
    try:
        meta = json.loads((export_dir / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return False
    digest = meta.get(DIGEST_KEY) if isinstance(meta, dict) else None
    model = export_dir / str(meta.get("model")) if isinstance(meta, dict) else None
    return digest is not None and digest == file_digest(weights) and model is not None and model.is_file()


def current_export(run_dir: str | Path) -> Path | None:
    """`<run_dir>/onnx` when it holds an export made from the run's present weights, else None."""
    export_dir = Path(run_dir) / RUN_EXPORT_DIR
    return export_dir if export_is_current(export_dir, Path(run_dir) / WEIGHTS) else None
