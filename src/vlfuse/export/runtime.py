"""Run an exported model with onnxruntime: raw images and texts in, probabilities out, no PyTorch model needed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlfuse.data.text import TextTokenizer
from vlfuse.errors import CheckpointError
from vlfuse.export.onnx import FORMAT, METADATA_FILE
from vlfuse.objective import Objective


def find_export_dir(path: str | Path) -> Path:
    """`path` itself when it holds an export, else `<path>/onnx` (the default export folder of a run)."""
    path = Path(path)
    for candidate in (path, path / "onnx"):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    raise CheckpointError(
        f"no ONNX export in '{path}' (looked for {METADATA_FILE} there and in {path / 'onnx'}); "
        f"create one with: vlfuse export {path} --format onnx"
    )


class OnnxModel:
    """An exported vlfuse model on onnxruntime, with the preprocessing recorded at export time.

    Args:
        path: an export folder, or a run directory whose `onnx/` holds one.
        int8: use the int8-quantised graph (exported with `--quantize int8`).
        threads: onnxruntime intra-op threads (default: as many as PyTorch uses).
    """

    def __init__(self, path: str | Path, *, int8: bool = False, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = find_export_dir(path)
        meta = json.loads((self.path / METADATA_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"'{self.path / METADATA_FILE}' is not a vlfuse ONNX export (format '{FORMAT}')")
        self.meta: dict[str, Any] = meta
        model_file = meta["int8_model"] if int8 else meta["model"]
        if model_file is None:
            raise CheckpointError(
                f"'{self.path}' has no int8 model; re-export with: vlfuse export RUN --format onnx --quantize int8"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.fspath(self.path / model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.model_file = model_file
        self.input_names: list[str] = meta["inputs"]
        self.label_names: list[str] = meta["label_names"]
        kind = meta.get("objective", meta.get("task"))  # exports written before the task registry say "task"
        self.objective = Objective(kind, len(self.label_names))
        self.tokenizer = TextTokenizer.load(self.path / meta["text"]["tokenizer"]) if meta["text"] else None
        image = meta["image"]
        if image is not None:
            self.mean = np.asarray(image["mean"], dtype=np.float32).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
            self.std = np.asarray(image["std"], dtype=np.float32).reshape(1, -1, 1, 1)  # (1, C, 1, 1)

    @property
    def reads_image(self) -> bool:
        return "image" in self.input_names

    @property
    def reads_text(self) -> bool:
        return "text_ids" in self.input_names

    @property
    def missing_modalities(self) -> bool:
        return bool(self.meta["missing_modalities"])

    def feeds(self, images: list[torch.Tensor | None], texts: list[str | None]) -> dict[str, np.ndarray]:
        """The graph's input arrays for parallel lists of decoded images ((C, H, W) uint8 at the export's size, or
        None) and texts (or None)."""
        n = len(images)
        feeds: dict[str, np.ndarray] = {}
        if self.reads_image:
            size, channels = self.meta["image"]["size"], self.meta["image"]["channels"]
            pixels = np.zeros((n, channels, size, size), dtype=np.uint8)  # (B, C, H, W)
            for i, im in enumerate(images):
                if im is not None:
                    pixels[i] = im.numpy()
            feeds["image"] = (pixels.astype(np.float32) / 255.0 - self.mean) / self.std  # (B, C, H, W)
        if self.reads_text:
            ids, mask = self.tokenizer.encode([[t if t is not None else ""] for t in texts])  # (B, L), (B, L)
            feeds["text_ids"], feeds["text_mask"] = ids.numpy(), mask.numpy()
        if "image_present" in self.input_names:
            feeds["image_present"] = np.array([im is not None for im in images], dtype=bool)  # (B,)
            feeds["text_present"] = np.array([t is not None for t in texts], dtype=bool)  # (B,)
        return {name: feeds[name] for name in self.input_names}

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """(B, K) logits for prepared input arrays."""
        return self.session.run(["logits"], feeds)[0]

    def predict_proba(self, images: list[torch.Tensor | None], texts: list[str | None]) -> torch.Tensor:
        """(B, num_labels) probabilities; a row may lack its image or its text when the model allows it."""
        logits = torch.from_numpy(self.logits(self.feeds(images, texts)))  # (B, K)
        return self.objective.probabilities(logits)
