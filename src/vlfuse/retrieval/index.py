"""An embedding index file: unit vectors + where each came from, searched exactly or with an HNSW graph (FAISS).

One safetensors file holds the embeddings (N, E), the serialised FAISS HNSW graph when there is one, and JSON
metadata: format, kind ("image" or "text"), the fingerprint of the run that embedded the items, the backend, the
sources and optional labels. Files are replaced atomically.

Backends (see benchmarks/retrieval_index.py and docs/design.md for the measurements behind `auto`):
- "exact": one matrix multiply + top-k over all items; no build cost, exact results.
- "hnsw": FAISS `IndexHNSWFlat` on inner product; a build cost per item, much faster queries on large sets,
  approximate results.
- "auto": exact below `AUTO_HNSW_MIN_ITEMS` items, HNSW from there on (built once when an index grows past it).

`add` appends items without rebuilding: exact search just sees more rows; the HNSW graph inserts the new vectors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vlfuse.errors import CheckpointError, DataError, VLFuseError
from vlfuse.train.checkpoint import atomic_save_tensors, read_checkpoint

log = logging.getLogger(__name__)

FORMAT = "vlfuse-embedding-index-1"
BACKENDS = ("auto", "exact", "hnsw")
AUTO_HNSW_MIN_ITEMS = 200_000  # exact search stays under a few ms per query below this (measured, see docstring)
HNSW_NEIGHBOURS = 32  # graph degree M
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 64


def _faiss():
    try:
        import faiss
    except ImportError:
        raise VLFuseError(
            "the HNSW index backend needs FAISS: pip install 'vlfuse[retrieval]' (faiss-cpu), or use --backend exact"
        ) from None
    return faiss


@dataclass
class SearchHit:
    rank: int  # 1-based
    position: int  # row in the index
    score: float  # cosine similarity
    source: str
    label: str | None


class EmbeddingIndex:
    """Embeddings of one kind (images or texts) from one model, with their sources.

    Args:
        dim: embedding width E.
        kind: "image" or "text".
        fingerprint: the embedding run's fingerprint (`RetrievalRun.fingerprint`).
        run: the run directory, for messages.
        backend: "auto", "exact" or "hnsw".
    """

    def __init__(self, dim: int, *, kind: str, fingerprint: str, run: str = "", backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise DataError(f"index backend {backend!r} is unknown; expected one of {', '.join(BACKENDS)}")
        if kind not in ("image", "text"):
            raise DataError(f"index kind {kind!r} is unknown; expected 'image' or 'text'")
        self.dim = dim
        self.kind = kind
        self.fingerprint = fingerprint
        self.run = run
        self.backend = backend
        self.embeddings = torch.empty(0, dim)  # (N, E)
        self.sources: list[str] = []
        self.labels: list[str | None] = []
        self.ann: Any = None  # faiss.IndexHNSWFlat when active

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def active_backend(self) -> str:
        return "hnsw" if self.ann is not None else "exact"

    def _wants_ann(self) -> bool:
        return self.backend == "hnsw" or (self.backend == "auto" and len(self) >= AUTO_HNSW_MIN_ITEMS)

    def _build_ann(self) -> None:
        faiss = _faiss()
        ann = faiss.IndexHNSWFlat(self.dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        ann.hnsw.efSearch = HNSW_EF_SEARCH
        if len(self):
            ann.add(np.ascontiguousarray(self.embeddings.numpy(), dtype=np.float32))
        self.ann = ann

    def add(self, embeddings: Tensor, sources: list[str], labels: list[str | None] | None = None) -> None:
        """Append items: (n, E) unit vectors and one source (and optional label) each; no rebuild."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise DataError(f"embeddings of shape {tuple(embeddings.shape)} cannot join an index of width {self.dim}")
        if len(sources) != len(embeddings) or (labels is not None and len(labels) != len(embeddings)):
            raise DataError(f"{len(embeddings)} embeddings but {len(sources)} sources; expected one source each")
        embeddings = embeddings.detach().float().cpu().contiguous()
        self.embeddings = torch.cat([self.embeddings, embeddings])  # (N + n, E)
        self.sources += list(sources)
        self.labels += list(labels) if labels is not None else [None] * len(sources)
        if self.ann is not None:
            self.ann.add(embeddings.numpy())
        elif self._wants_ann():
            self._build_ann()

    def check_model(self, fingerprint: str, run: str | Path, index_path: str | Path = "index") -> None:
        """Raise CheckpointError when the index was embedded by another model than the querying run."""
        if fingerprint != self.fingerprint:
            raise CheckpointError(
                f"index '{index_path}' was built by a different model (fingerprint {self.fingerprint}, run "
                f"'{self.run}') than run '{run}' (fingerprint {fingerprint}); its embeddings are not comparable. "
                f"Rebuild it with: vlfuse index {run} SOURCE"
            )

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Top-k items per query: scores (Q, k) descending and positions (Q, k) long; k is capped at len(self)."""
        if len(self) == 0:
            raise DataError("the index is empty; add items with `vlfuse index RUN SOURCE --append`")
        if k < 1:
            raise DataError(f"k must be at least 1, got {k}")
        k = min(k, len(self))
        queries = queries.detach().float().cpu().reshape(-1, self.dim)  # (Q, E)
        if self.ann is None:
            return (queries @ self.embeddings.t()).topk(k, dim=1)  # (Q, k), (Q, k)
        scores, positions = self.ann.search(np.ascontiguousarray(queries.numpy()), k)  # (Q, k) each
        return torch.from_numpy(scores), torch.from_numpy(positions).long()

    def hits(self, query: Tensor, k: int) -> list[SearchHit]:
        """The top-k of one query (E,) as SearchHits."""
        scores, positions = self.search(query.reshape(1, -1), k)
        return [
            SearchHit(rank=r + 1, position=p, score=s, source=self.sources[p], label=self.labels[p])
            for r, (s, p) in enumerate(zip(scores[0].tolist(), positions[0].tolist(), strict=True))
            if p >= 0  # FAISS pads with -1 when it finds fewer than k
        ]

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        tensors = {"embeddings": self.embeddings}
        if self.ann is not None:
            tensors["hnsw"] = torch.from_numpy(_faiss().serialize_index(self.ann))  # (bytes,) uint8
        metadata = {
            "format": FORMAT, "kind": self.kind, "fingerprint": self.fingerprint, "run": self.run,
            "backend": self.backend, "dim": str(self.dim), "sources": json.dumps(self.sources),
            "labels": json.dumps(self.labels),
        }  # fmt: skip
        atomic_save_tensors(tensors, Path(path), metadata)

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """Raises DataError when `path` is missing or not a vlfuse index."""
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"index file '{path}' does not exist; build one with `vlfuse index RUN SOURCE --out {path}`"
            )
        try:
            tensors, meta = read_checkpoint(path)
        except CheckpointError as err:
            raise DataError(f"index file '{path}' cannot be read: {err}") from None
        if meta.get("format") != FORMAT:
            raise DataError(f"'{path}' is not a vlfuse embedding index (format {meta.get('format')!r}, "
                            f"expected {FORMAT!r})")  # fmt: skip
        index = cls(int(meta["dim"]), kind=meta["kind"], fingerprint=meta["fingerprint"], run=meta["run"],
                    backend=meta["backend"])  # fmt: skip
        index.embeddings = tensors["embeddings"].float()  # (N, E)
        index.sources = json.loads(meta["sources"])
        index.labels = json.loads(meta["labels"])
        if len(index.sources) != len(index.embeddings):
            raise DataError(f"index file '{path}' is inconsistent: {len(index.embeddings)} vectors, "
                            f"{len(index.sources)} sources")  # fmt: skip
        if "hnsw" in tensors:
            index.ann = _faiss().deserialize_index(tensors["hnsw"].numpy())
            index.ann.hnsw.efSearch = HNSW_EF_SEARCH
        return index
