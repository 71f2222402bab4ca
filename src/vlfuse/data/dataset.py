"""In-memory dataset types and `prepare_data`: any source → train / val / test tensors, tokenizer and labels.

Flow: load the source into a `RawSplit` (decoded images + raw strings) → limit rows → build the label vocabulary
from the whole training source → check test labels → carve validation from train by image → train the tokenizer
on the train split only → encode every split into a `SplitData`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.labels import encode_labels
from vlfuse.data.text import TextTokenizer
from vlfuse.errors import DataError
from vlfuse.types import EncoderOutput

log = logging.getLogger(__name__)

__all__ = ["DataIssue", "PreparedData", "RawSplit", "SplitData", "encode_labels", "prepare_data", "prepare_inputs"]


@dataclass(frozen=True)
class DataIssue:
    """One row skipped under `data.on_error: skip`. `row` is the number shown to users (see RawSplit)."""

    file: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}, column '{self.column}': {self.message}"


def _as_index(rows: Tensor | Sequence[int] | np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(rows, dtype=np.int64)) if not isinstance(rows, Tensor) else rows.long()


def _take_images(
    images: Tensor | None, image_index: Tensor | None, sources: list[str], rows: Tensor
) -> tuple[Tensor | None, Tensor | None, list[str]]:
    """Keep only the images referenced by `rows` and renumber the row → image index accordingly."""
    if images is None or image_index is None:
        return None, None, []
    used, new_index = torch.unique(image_index[rows], sorted=True, return_inverse=True)  # (M',), (N',)
    return images[used], new_index, [sources[i] for i in used.tolist()]  # (M', C, H, W)


@dataclass
class RawSplit:
    """A loaded source before tokenizing / label encoding: decoded images and raw strings.

    Attributes:
        file: where the rows came from, for messages (table path or e.g. "easy-vqa:train").
        images: (M, C, H, W) uint8 unique images, or None for data without images.
        image_index: (N,) long, row → index into `images`.
        texts: per row, one string per text column; None for data without text.
        labels: per row, the label string (list of strings for multilabel); None when unlabelled.
        image_sources: where each unique image came from.
        source_rows: per row, its number in the source: the 1-based data row for tables (as in error
            messages), the 0-based index into the dataset for built-ins.
        text_columns / label_column: column names, for messages.
        label_names: the dataset's own label order (built-ins); None → derived from the data.
        issues: rows dropped while loading (on_error=skip).
    """

    file: str
    images: Tensor | None
    image_index: Tensor | None
    texts: list[list[str]] | None
    labels: list[str] | list[list[str]] | None
    image_sources: list[str]
    source_rows: list[int]
    text_columns: list[str] = field(default_factory=list)
    label_column: str = "label"
    label_names: list[str] | None = None
    issues: list[DataIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.source_rows)

    def select(self, rows: Tensor | Sequence[int] | np.ndarray) -> RawSplit:
        """The given rows (positions), keeping only the images they use."""
        idx = _as_index(rows)
        pos = idx.tolist()
        images, image_index, sources = _take_images(self.images, self.image_index, self.image_sources, idx)
        return replace(
            self,
            images=images,
            image_index=image_index,
            image_sources=sources,
            texts=None if self.texts is None else [self.texts[i] for i in pos],
            labels=None if self.labels is None else [self.labels[i] for i in pos],
            source_rows=[self.source_rows[i] for i in pos],
            issues=list(self.issues),
        )


@dataclass
class SplitData:
    """One split as tensors (see docs/design.md)."""

    images: Tensor | None  # (M, C, H, W) uint8 unique images
    image_index: Tensor | None  # (N,) long row -> image
    token_ids: Tensor | None  # (N, L) long
    token_mask: Tensor | None  # (N, L) bool
    labels: Tensor | None  # (N,) long | (N,) float | (N, K) float
    texts: list[str]
    image_sources: list[str]
    source_rows: list[int]
    # a frozen image tower's cached features of each unique image (tokens (M, N, D), pooled (M, D)); when set, batches
    # carry these instead of pixels. Attached after preparation (`vlfuse.features`); `subset` drops them.
    image_features: EncoderOutput | None = None

    def __len__(self) -> int:
        return len(self.source_rows)

    def subset(self, rows: Tensor | Sequence[int] | np.ndarray) -> SplitData:
        """The given rows (positions) as a new split; only the images still referenced are kept, reindexed."""
        idx = _as_index(rows)
        images, image_index, sources = _take_images(self.images, self.image_index, self.image_sources, idx)
        pos = idx.tolist()
        return SplitData(
            images=images,
            image_index=image_index,
            token_ids=None if self.token_ids is None else self.token_ids[idx],
            token_mask=None if self.token_mask is None else self.token_mask[idx],
            labels=None if self.labels is None else self.labels[idx],
            texts=[self.texts[i] for i in pos] if self.texts else [],
            image_sources=sources,
            source_rows=[self.source_rows[i] for i in pos],
        )


@dataclass
class PreparedData:
    train: SplitData
    val: SplitData
    test: SplitData | None
    tokenizer: TextTokenizer | None
    label_names: list[str]
    task: str
    issues: list[DataIssue]


def sample_rows(n: int, k: int, seed: int, groups: Sequence | np.ndarray | None = None) -> np.ndarray:
    """k of n row positions chosen by `seed`, in ascending order (deterministic).

    With `groups` (e.g. each row's image), whole groups are taken in random order so that rows sharing an image
    stay together (only the last group taken may be cut).
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return np.sort(rng.choice(n, size=min(k, n), replace=False))
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)  # (N,) group id per row
    rank = rng.permutation(int(inverse.max()) + 1)[inverse]  # (N,) random rank of each row's group
    return np.sort(np.argsort(rank, kind="stable")[:k])


def join_texts(texts: list[list[str]] | None, n: int) -> list[str]:
    """The display form of each row's text: columns joined with ' [SEP] ' ("" for data without text)."""
    if texts is None:
        return [""] * n
    return [row[0] if len(row) == 1 else " [SEP] ".join(row) for row in texts]


def prepare_data(
    cfg: DataConfig,
    *,
    seed: int,
    tokenizer: TextTokenizer | None = None,
    label_names: list[str] | None = None,
) -> PreparedData:
    """Load, split, tokenize and encode the data described by `cfg`.

    Args:
        cfg: the data section of the experiment config.
        seed: the run seed. Unused on purpose: the limit sample and the validation split depend on
            `cfg.split_seed` alone, so runs with different seeds are evaluated on the same rows.
        tokenizer: a trained tokenizer to reuse (re-evaluating a saved run) instead of training one.
        label_names: a saved run's label vocabulary to use instead of deriving one; rows of any split with
            other labels are errors (or skipped issues).

    Raises:
        DataError: unreadable source, bad rows under on_error=raise, unusable labels for the task.
    """
    from vlfuse.data.sources import check_known_labels, label_vocabulary_of, load_source, split_by_image

    del seed
    if cfg.task is None:
        from vlfuse.data.builtin import default_task

        cfg = cfg.model_copy(update={"task": default_task(cfg.name)})
    raw_train = load_source(cfg, "train")
    raw_test = load_source(cfg, "test")
    issues = list(raw_train.issues) + (list(raw_test.issues) if raw_test is not None else [])
    if len(raw_train) < 2:
        raise DataError(f"{raw_train.file}: only {len(raw_train)} usable training row(s); expected at least 2")
    if label_names is None:
        label_names = label_vocabulary_of(raw_train, cfg.task)  # from all training rows: the val carve adds none
    else:
        raw_train = check_known_labels(raw_train, label_names, cfg.task, on_error=cfg.on_error, issues=issues)
    if raw_test is not None:
        raw_test = check_known_labels(raw_test, label_names, cfg.task, on_error=cfg.on_error, issues=issues)
    train_rows, val_rows = split_by_image(raw_train, cfg.val_fraction, cfg.split_seed)
    raw_val, raw_train = raw_train.select(val_rows), raw_train.select(train_rows)

    if raw_train.texts is None:
        tokenizer = None
    elif tokenizer is None:
        tokenizer = TextTokenizer.train(
            (cell for row in raw_train.texts for cell in row),
            kind=cfg.tokenizer,
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            lowercase=cfg.lowercase,
            strip_punctuation=cfg.strip_punctuation,
            max_length=cfg.max_text_length,
        )

    def encode(raw: RawSplit) -> SplitData:
        ids = mask = None
        if tokenizer is not None and raw.texts is not None:
            ids, mask = tokenizer.encode(raw.texts)  # (N, L), (N, L)
        labels = None if raw.labels is None else encode_labels(raw.labels, label_names, cfg.task, source=raw.file)
        return SplitData(
            images=raw.images,
            image_index=raw.image_index,
            token_ids=ids,
            token_mask=mask,
            labels=labels,
            texts=join_texts(raw.texts, len(raw)),
            image_sources=raw.image_sources,
            source_rows=raw.source_rows,
        )

    prepared = PreparedData(
        train=encode(raw_train),
        val=encode(raw_val),
        test=None if raw_test is None else encode(raw_test),
        tokenizer=tokenizer,
        label_names=label_names,
        task=cfg.task,
        issues=issues,
    )
    train_labels = prepared.train.labels
    if train_labels is not None and cfg.task != "binary":
        counts = (
            train_labels.sum(0) if train_labels.ndim == 2 else torch.bincount(train_labels, minlength=len(label_names))
        )
        absent = [label_names[k] for k in torch.nonzero(counts == 0).flatten().tolist()]
        if absent:
            log.warning("label(s) with no training rows after the validation split: %s", ", ".join(absent[:20]))
    if issues:
        log.warning("%d row(s) skipped (data.on_error=skip); first: %s", len(issues), issues[0])
    log.info(
        "data %s: %d train / %d val / %s test rows, %d labels",
        cfg.name,
        len(prepared.train),
        len(prepared.val),
        "no" if prepared.test is None else len(prepared.test),
        len(label_names),
    )
    return prepared


def prepare_inputs(
    images: Sequence[str | Path | bytes] | None,
    texts: Sequence[str] | Sequence[Sequence[str]] | None,
    tokenizer: TextTokenizer | None,
    cfg: DataConfig,
) -> SplitData:
    """Turn raw user inputs (at predict time) into an unlabelled SplitData, exactly as training data was encoded.

    Args:
        images: image paths or encoded image bytes, one per row; None for text-only models.
        texts: one string per row (one text column) or one list of column strings per row; None for image-only.
        tokenizer: the training tokenizer (required when `texts` is given).
        cfg: the training data config (image size, channels).

    Raises:
        DataError: an image cannot be decoded, the inputs disagree in length, or text is given without a tokenizer.
    """
    from vlfuse.data.images import decode_image_bytes, load_image

    n_img = None if images is None else len(images)
    n_txt = None if texts is None else len(texts)
    if n_img is not None and n_txt is not None and n_img != n_txt:
        raise DataError(f"got {n_img} images but {n_txt} texts; expected one text per image")
    n = n_img if n_img is not None else n_txt
    if not n:
        raise DataError("no inputs: expected at least one image or text")
    image_tensor = index = None
    sources: list[str] = []
    if images is not None:
        decoded = []
        for i, item in enumerate(images):
            if isinstance(item, bytes | bytearray):
                source = f"input {i + 1}"
                image = decode_image_bytes(bytes(item), size=cfg.image_size, channels=cfg.channels, source=source)
            else:
                source = str(item)
                image = load_image(item, size=cfg.image_size, channels=cfg.channels)
            decoded.append(image)
            sources.append(source)
        image_tensor = torch.stack(decoded)  # (B, C, H, W)
        index = torch.arange(n)  # (B,)
    rows = None
    ids = mask = None
    if texts is not None:
        if tokenizer is None:
            raise DataError("texts were given but the model has no tokenizer (it was trained without text)")
        rows = [[t] if isinstance(t, str) else [str(c) for c in t] for t in texts]
        ids, mask = tokenizer.encode(rows)  # (B, L), (B, L)
    return SplitData(
        images=image_tensor,
        image_index=index,
        token_ids=ids,
        token_mask=mask,
        labels=None,
        texts=join_texts(rows, n),
        image_sources=sources,
        source_rows=list(range(n)),
    )
