"""Run an exported model with onnxruntime: raw images and texts in, probabilities out, without torch.

Nothing here imports torch (its import alone takes ~1.7 s on a 2-core machine), so `vlfuse predict` on a run with a
current export starts in well under that; `predict_proba` hands tensors to the server, which has torch loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlfuse.classify.inputs import check_inputs
from vlfuse.data.pixels import load_pixels
from vlfuse.data.text import TextTokenizer
from vlfuse.errors import CheckpointError
from vlfuse.export.format import FORMAT, METADATA_FILE, RUN_EXPORT_DIR
from vlfuse.threads import available_cores

if TYPE_CHECKING:
    import torch


def find_export_dir(path: str | Path) -> Path:
    """`path` itself when it holds an export, else `<path>/onnx` (the default export folder of a run)."""
    path = Path(path)
    for candidate in (path, path / RUN_EXPORT_DIR):
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
        threads: onnxruntime intra-op threads (default: this process's cores).
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
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.fspath(self.path / model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.model_file = model_file
        self.input_names: list[str] = meta["inputs"]
        self.label_names: list[str] = meta["label_names"]
        self.objective: str = meta.get("objective", meta.get("task"))  # older exports say "task"
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

    def feeds(self, images: list[np.ndarray | torch.Tensor | None], texts: list[str | None]) -> dict[str, np.ndarray]:
        """The graph's input arrays for parallel lists of decoded images ((C, H, W) uint8 at the export's size, as
        arrays or tensors, or None) and texts (or None)."""
        n = len(images)
        feeds: dict[str, np.ndarray] = {}
        if self.reads_image:
            size, channels = self.meta["image"]["size"], self.meta["image"]["channels"]
            pixels = np.zeros((n, channels, size, size), dtype=np.uint8)  # (B, C, H, W)
            for i, im in enumerate(images):
                if im is not None:
                    pixels[i] = np.asarray(im)
            feeds["image"] = (pixels.astype(np.float32) / 255.0 - self.mean) / self.std  # (B, C, H, W)
        if self.reads_text:
            ids, mask = self.tokenizer.encode_arrays([[t if t is not None else ""] for t in texts])  # (B, L) each
            feeds["text_ids"], feeds["text_mask"] = ids, mask
        if "image_present" in self.input_names:
            feeds["image_present"] = np.array([im is not None for im in images], dtype=bool)  # (B,)
            feeds["text_present"] = np.array([t is not None for t in texts], dtype=bool)  # (B,)
        return {name: feeds[name] for name in self.input_names}

    def logits(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """(B, K) logits for prepared input arrays."""
        return self.session.run(["logits"], feeds)[0]

    def probabilities(self, images: list[np.ndarray | torch.Tensor | None], texts: list[str | None]) -> np.ndarray:
        """(B, num_labels) probabilities, as `vlfuse.objective.Objective.probabilities` computes them from logits:
        softmax; [1 - p, p] for binary; independent sigmoids for multilabel."""
        logits = self.logits(self.feeds(images, texts)).astype(np.float64)  # (B, K)
        if self.objective == "multiclass":
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # (B, K)
            return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        p = 1.0 / (1.0 + np.exp(-logits))  # (B, K)
        return (np.stack([1 - p[:, 0], p[:, 0]], axis=1) if self.objective == "binary" else p).astype(np.float32)

    def predict_proba(self, images: list[np.ndarray | torch.Tensor | None], texts: list[str | None]) -> torch.Tensor:
        """`probabilities` as a tensor (the server's form); a row may lack its image or its text when the model
        allows it."""
        import torch  # the caller (the server) has it loaded already

        return torch.from_numpy(self.probabilities(images, texts))  # (B, K)

    def predict(
        self, image: str | Path | None = None, text: str | None = None, *, top_k: int = 3
    ) -> list[tuple[str, float]]:
        """Top-k (label, probability) for one image file and/or text, as `ClassifyRun.predict` gives them.

        Raises:
            ValueError: no input, an empty text, or a modality the model cannot do without is missing.
            DataError: the image cannot be decoded.
        """
        if image is None and text is None:
            raise ValueError("no inputs: give an image (--image PATH), a text (--text '...') or both")
        check_inputs([image is not None], [text is not None], [text], reads_image=self.reads_image,
                     reads_text=self.reads_text, placeholders=self.missing_modalities)  # fmt: skip
        pixels = None
        if image is not None and self.reads_image:
            spec = self.meta["image"]
            pixels = load_pixels(image, size=spec["size"], channels=spec["channels"])  # (C, S, S), as ClassifyRun
        probs = self.probabilities([pixels], [text])[0]  # (K,)
        order = np.argsort(-probs, kind="stable")[: min(top_k, len(probs))]
        return [(self.label_names[i], float(probs[i])) for i in order]
