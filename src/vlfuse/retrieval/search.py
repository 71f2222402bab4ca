"""What `vlfuse index`, `vlfuse search` and `vlfuse zeroshot` do, as functions returning results (the CLI prints).

build_index(run, "fashion-mnist", "fm.index")             # embed + index all 70,000 images
hits = search(run, "fm.index", "an ankle boot", k=5)        # text → image; an image path → image → text/image
zeroshot(run, labels=None, on="easy-vqa:test")              # accuracy from label prompts
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from vlfuse.data.builtin.easy_vqa import NAME as EASY_VQA
from vlfuse.data.builtin.fashion_mnist import NAME as FASHION_MNIST
from vlfuse.data.captions import caption_templates
from vlfuse.errors import DataError
from vlfuse.parallel import Share
from vlfuse.retrieval.index import EmbeddingIndex, SearchHit
from vlfuse.retrieval.run import RetrievalRun
from vlfuse.retrieval.sources import IMAGE_SUFFIXES, image_chunks, parse_builtin, text_items, thumbnail
from vlfuse.retrieval.zeroshot import classify

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    path: Path
    kind: str
    added: int
    total: int
    backend: str
    embed_seconds: float
    index_seconds: float
    seconds: float


def build_index(
    run: RetrievalRun, source: str, out: str | Path, *, texts: bool = False, append: bool = False,
    overwrite: bool = False, backend: str = "auto", image_column: str = "image", caption_column: str = "caption",
    label_column: str | None = None, allow_outside_root: bool = False, share: Share | None = None,
    chunk_size: int = 4096,
) -> IndexReport | None:  # fmt: skip
    """Embed a SOURCE (see `vlfuse.retrieval.sources`) into the index file `out`.

    Args:
        texts: index the source's texts instead of its images.
        allow_outside_root: a table's image paths may leave the table's folder.
        append: add to the existing index at `out` (built by the same run) without rebuilding it.
        overwrite: replace an existing file at `out`.
        backend: "auto", "exact" or "hnsw" (for a new index).
        share: this process's part of a batch job over several (`vlfuse index --nproc`): it embeds its part, the
            main process adds everything in the source's order and writes the index (and returns the report; the
            others return None).

    Raises:
        DataError: `out` exists and neither append nor overwrite was asked for; unreadable source.
        CheckpointError: appending to an index built by another model.
    """
    started = time.perf_counter()
    out = Path(out)
    kind = "text" if texts else "image"
    if out.exists() and append:
        index = EmbeddingIndex.load(out)
        index.check_model(run.fingerprint, run.path, out)
        if index.kind != kind:
            raise DataError(f"index '{out}' holds {index.kind}s; cannot append {kind}s to it")
    elif out.exists() and not overwrite:
        raise DataError(f"index file '{out}' already exists; pass --append to add to it or --overwrite to replace it")
    else:
        index = EmbeddingIndex(run.model.embed_dim, kind=kind, fingerprint=run.fingerprint, run=str(run.path),
                               backend=backend)  # fmt: skip
    before = len(index)
    share = share or Share()
    embed_seconds = index_seconds = 0.0
    found: list[tuple[int, Tensor, list[str], list[str | None]]] = []  # (place in the source, embeddings, …)
    if texts:
        items, sources = text_items(source, caption_column=caption_column)
        mine = share.span(len(items))
        tick = time.perf_counter()
        emb = run.embed_texts(items[mine.start : mine.stop])  # (T', E)
        embed_seconds = time.perf_counter() - tick
        found.append((0, emb, sources[mine.start : mine.stop], list(items[mine.start : mine.stop])))
    else:
        for chunk in image_chunks(source, run.cfg.data, image_column=image_column, label_column=label_column,
                                  allow_outside_root=allow_outside_root, share=share, chunk=chunk_size):  # fmt: skip
            tick = time.perf_counter()
            emb = run.embed_images(chunk.images)  # (n, E)
            embed_seconds += time.perf_counter() - tick
            if share.world == 1:  # one process: into the index chunk by chunk
                tick = time.perf_counter()
                index.add(emb, chunk.sources, chunk.labels)
                index_seconds += time.perf_counter() - tick
            else:
                found.append((chunk.number, emb, chunk.sources, chunk.labels))
    parts = share.gather(found) if share.world > 1 or texts else [found]
    if parts is None:
        return None
    tick = time.perf_counter()
    for _, emb, sources, labels in sorted((item for part in parts for item in part), key=lambda item: item[0]):
        index.add(emb, sources, labels)
    index.save(out)
    index_seconds += time.perf_counter() - tick
    return IndexReport(out, kind, len(index) - before, len(index), index.active_backend, embed_seconds, index_seconds,
                       time.perf_counter() - started)  # fmt: skip


def is_image_query(query: str) -> bool:
    return Path(query).suffix.lower() in IMAGE_SUFFIXES and Path(query).is_file()


@dataclass
class SearchResult:
    query: str
    query_kind: str  # "text" or "image"
    index_kind: str
    hits: list[SearchHit]
    seconds: float = 0.0
    sheet: Path | None = None


def search(
    run: RetrievalRun, index: EmbeddingIndex | str | Path, query: str, *, k: int = 5,
    sheet: str | Path | None = None,
) -> SearchResult:  # fmt: skip
    """Top-k items of an index for a text query, or for an image query (a path to an image file).

    Raises:
        CheckpointError: the index was built by another model.
        DataError: bad index file, empty query, unreadable query image.
    """
    index_path = index if not isinstance(index, EmbeddingIndex) else "index"
    if not isinstance(index, EmbeddingIndex):
        index = EmbeddingIndex.load(index)
    index.check_model(run.fingerprint, run.path, index_path)
    if not query.strip():
        raise DataError("empty query; expected a text or the path of an image file")
    started = time.perf_counter()
    image_query = is_image_query(query)
    if image_query:
        vector = run.embed_images(run.load_images([query]))[0]  # (E,)
    else:
        vector = run.embed_texts([query])[0]  # (E,)
    hits = index.hits(vector, k)
    result = SearchResult(query, "image" if image_query else "text", index.kind, hits, time.perf_counter() - started)
    if sheet is not None:
        from vlfuse.retrieval.sheet import image_results_sheet, text_results_sheet

        shown = thumbnail(query) if image_query else query
        draw = image_results_sheet if index.kind == "image" else text_results_sheet
        kwargs = {"root": run.cfg.data.root} if index.kind == "image" else {}
        result.sheet = draw(shown, hits, sheet, **kwargs)
    return result


def default_templates(run: RetrievalRun) -> list[str]:
    """Held-out caption templates for the built-ins (prompts the text tower never saw); "{}" otherwise."""
    if run.dataset in (EASY_VQA, FASHION_MNIST):
        return caption_templates(run.dataset, "heldout")
    return ["{}"]


@dataclass
class ZeroShotResult:
    labels: list[str]
    templates: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    per_label: dict[str, float] = field(default_factory=dict)  # accuracy per true label
    predictions: list[tuple[str, str, float]] = field(default_factory=list)  # (source, label, score) for --image


def zeroshot(
    run: RetrievalRun, *, labels: Sequence[str] | None = None, templates: Sequence[str] | None = None,
    on: str | None = None, images: Sequence[str] = (), heldout_only: bool = False,
) -> ZeroShotResult:  # fmt: skip
    """Zero-shot labels from label names and prompt templates.

    Args:
        labels: label names (default: the run's keys; with `heldout_only`, its held-out keys).
        templates: prompt templates (default: `default_templates`).
        on: a labelled source to score (a built-in such as "fashion-mnist:test"); images whose label is not among
            `labels` are not scored.
        images: image files to label (their top label and score are returned).
        heldout_only: score only images of the run's held-out keys (from `captions.holdout`).

    Raises:
        DataError: no labels, nothing to score, or a source without labels.
    """
    if heldout_only and not run.heldout:
        raise DataError(f"run '{run.path}' was trained without held-out keys (captions.holdout is empty)")
    labels = list(labels) if labels else list(run.heldout if heldout_only else run.label_names)
    templates = list(templates) if templates else default_templates(run)
    dataset = run.dataset if run.dataset in (EASY_VQA, FASHION_MNIST) else "table"
    label_emb = run.label_embeddings(labels, templates, dataset)  # (K, E)
    result = ZeroShotResult(labels, templates)
    if images:
        emb = run.embed_images(run.load_images(list(images)))  # (n, E)
        predicted, scores = classify(emb, label_emb)
        result.predictions = [(str(p), labels[int(i)], float(scores[r, i]))
                              for r, (p, i) in enumerate(zip(images, predicted.tolist(), strict=True))]  # fmt: skip
    if on is not None:
        if parse_builtin(on) is None:
            raise DataError(f"--on '{on}': expected a labelled built-in split such as fashion-mnist:test")
        embs, keys = [], []
        for chunk in image_chunks(on, run.cfg.data):
            keep = [i for i, label in enumerate(chunk.labels) if label is not None]
            embs.append(run.embed_images(chunk.images[keep]))
            keys += [chunk.labels[i] for i in keep]
        emb = torch.cat(embs)  # (M, E)
        if heldout_only:
            rows = [i for i, key in enumerate(keys) if key in set(run.heldout)]
            emb, keys = emb[rows], [keys[i] for i in rows]
        slot = {label: i for i, label in enumerate(labels)}
        rows = [i for i, key in enumerate(keys) if key in slot]
        if not rows:
            raise DataError(f"no image of '{on}' has one of the labels {labels[:10]}; nothing to score")
        target = torch.tensor([slot[keys[i]] for i in rows])  # (N,)
        predicted, _ = classify(emb[rows], label_emb)  # (N,)
        from vlfuse.retrieval.metrics import zeroshot_accuracy

        result.metrics = zeroshot_accuracy(predicted, target, len(labels))
        result.metrics["unscored"] = len(keys) - len(rows)
        for i, label in enumerate(labels):
            mine = target == i
            if bool(mine.any()):
                result.per_label[label] = float((predicted[mine] == i).float().mean())
    return result
