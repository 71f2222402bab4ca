"""A trained retrieval run directory, loaded for embedding, search and zero-shot labels.

The run's fingerprint (a hash of its weights, tokenizer and model/data config) is stored in every index built with
it, so a query through another model is refused instead of returning meaningless neighbours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from vlfuse.data.images import load_image
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.pretrained import cache_root
from vlfuse.retrieval.config import RetrievalConfig
from vlfuse.retrieval.data import prepare_retrieval_data
from vlfuse.retrieval.embed import embed_images, embed_texts, evaluate_captioned
from vlfuse.retrieval.model import build_for_run
from vlfuse.retrieval.zeroshot import label_embeddings
from vlfuse.train.checkpoint import atomic_save_tensors, load_model_weights

WEIGHTS = "model.safetensors"


MANY_PROMPTS = 64  # label sets with at least this many prompts are kept on disk
READING_ONLY_KEYS = {"allow_outside_root", "encoding"}  # how a table is read, not what the model computes


def run_fingerprint(path: Path, cfg: RetrievalConfig) -> str:
    """sha256 (first 16 hex digits) of the weights file, the tokenizer file and the model / data config."""
    digest = hashlib.sha256()
    for name in (WEIGHTS, "tokenizer.json"):
        with open(path / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    data = cfg.data.model_dump(mode="json", exclude=READING_ONLY_KEYS)
    digest.update(json.dumps({"model": cfg.model.model_dump(mode="json"), "data": data}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


class RetrievalRun:
    """Everything needed to embed images and texts the way the run was trained (no augmentation)."""

    def __init__(self, path: Path, cfg: RetrievalConfig, model, tokenizer: TextTokenizer, labels: dict[str, Any]):
        self.path = path
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.label_names: list[str] = labels.get("label_names", [])
        self.heldout: list[str] = labels.get("heldout", [])
        self.dataset: str = labels.get("dataset", cfg.data.name)
        self.preprocess = ImagePreprocessor(cfg.data, augment=False)
        self.fingerprint = run_fingerprint(path, cfg)
        self._labels: dict[str, Tensor] = {}  # zero-shot label embeddings by key

    task = "retrieval"

    @classmethod
    def load(cls, path: str | Path, cfg: RetrievalConfig, *, device: str = "cpu") -> RetrievalRun:
        """A finished retrieval run directory with its validated config (use `vlfuse.load_run(path)`)."""
        path = Path(path)
        labels_file = path / "labels.json"
        labels = json.loads(labels_file.read_text()) if labels_file.is_file() else {}
        tokenizer = TextTokenizer.load(path / "tokenizer.json")
        model = build_for_run(cfg, tokenizer)
        load_model_weights(model, path / WEIGHTS)
        model.to(device).eval()
        return cls(path, cfg, model, tokenizer, labels)

    @property
    def metrics(self) -> dict[str, Any]:
        """The test metrics written when the run finished (retrieval per split, zero-shot)."""
        file = self.path / "test_metrics.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def load_images(self, paths: Sequence[str | Path]) -> Tensor:
        """Image files → (M, C, H, W) uint8 at the run's size and channels (DataError naming a bad file)."""
        size, channels = self.cfg.data.image_size, self.cfg.data.channels
        return torch.stack([load_image(p, size=size, channels=channels, fit=self.cfg.data.fit) for p in paths])

    def embed_images(self, images: Tensor, batch_size: int = 512) -> Tensor:
        """(M, C, H, W) uint8 → (M, E) unit vectors."""
        return embed_images(self.model, images, self.preprocess, batch_size=batch_size)

    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        """Texts → (T, E) unit vectors; an empty text is an error."""
        empty = [i for i, t in enumerate(texts) if not str(t).strip()]
        if empty:
            raise ValueError(f"text {empty[0] + 1} is empty; expected a non-empty caption or query")
        return embed_texts(self.model, self.tokenizer, list(texts))

    def label_embeddings(self, labels: Sequence[str], templates: Sequence[str], dataset: str) -> Tensor:
        """(K, E) zero-shot label embeddings (`vlfuse.retrieval.zeroshot.label_embeddings`), remembered per run and,
        for many labels (embedding 1,000 prompts takes seconds), kept in vlfuse's cache under the run's fingerprint."""
        key = hashlib.sha256(json.dumps([self.fingerprint, list(labels), list(templates), dataset]).encode())
        key = key.hexdigest()[:16]
        if key in self._labels:
            return self._labels[key]
        file = cache_root() / "labels" / f"{key}.safetensors"
        if file.is_file():
            emb = load_file(str(file))["labels"]
        else:
            emb = label_embeddings(self.model, self.tokenizer, labels, templates, dataset)
            if len(labels) * len(templates) >= MANY_PROMPTS:
                atomic_save_tensors({"labels": emb}, file)
        self._labels[key] = emb
        return emb

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Retrieval metrics of one split of the run's data (re-prepared with the run's tokenizer)."""
        data = prepare_retrieval_data(self.cfg, tokenizer=self.tokenizer)
        chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split)
        if chosen is None:
            raise ValueError(f"split '{split}' is not available; choose train, val or test")
        return evaluate_captioned(self.model, chosen, data.key_ids(chosen), self.tokenizer, self.preprocess,
                                  batch_size=self.cfg.train.eval_batch_size)  # fmt: skip
