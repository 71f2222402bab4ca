"""`prepare_data`: any source → train / val / test tensors, tokenizer and labels; `prepare_inputs` for predict time.

Flow: load the source into a `RawSplit` (decoded images + raw strings) → limit rows → build the label vocabulary
from the whole training source → check test labels → carve validation from train by image → train the tokenizer
on the train split only → encode every split into a `SplitData`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vlfuse.config import DataConfig
from vlfuse.data.builtin import default_objective
from vlfuse.data.images import decode_image_bytes, load_image
from vlfuse.data.labels import encode_labels
from vlfuse.data.sources import check_known_labels, label_vocabulary_of, load_source
from vlfuse.data.splits import DataIssue, PreparedData, RawSplit, SplitData, join_texts, split_by_group
from vlfuse.data.text import TextTokenizer
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

# the types live in vlfuse.data.splits
__all__ = ["load_raw_splits", "prepare_data", "prepare_inputs", "train_tokenizer"]


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
        DataError: unreadable source, bad rows under on_error=raise, unusable labels for the objective.
    """
    del seed
    if cfg.objective is None:
        cfg = cfg.model_copy(update={"objective": default_objective(cfg.name)})
    raw = load_raw_splits(cfg, label_names)
    label_names, issues = raw.label_names, raw.issues
    raw_train, raw_val, raw_test = raw.train, raw.val, raw.test
    if raw_train.texts is None:
        tokenizer = None
    elif tokenizer is None:
        tokenizer = train_tokenizer(cfg, raw_train)

    def encode(raw: RawSplit) -> SplitData:
        ids = mask = None
        if tokenizer is not None and raw.texts is not None:
            ids, mask = tokenizer.encode(raw.texts)  # (N, L), (N, L)
        labels = None if raw.labels is None else encode_labels(raw.labels, label_names, cfg.objective, source=raw.file)
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
        objective=cfg.objective,
        issues=issues,
    )
    train_labels = prepared.train.labels
    if train_labels is not None and cfg.objective != "binary":
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


@dataclass
class RawSplits:
    """A source loaded and split, before tokenizing: what `prepare_data` and `vlfuse data pack` share."""

    train: RawSplit
    val: RawSplit
    test: RawSplit | None
    label_names: list[str]
    issues: list[DataIssue]


def load_raw_splits(cfg: DataConfig, label_names: list[str] | None = None) -> RawSplits:
    """Load train (and test) rows, fix the label vocabulary and carve validation from train by group (rows sharing an
    image, or a clip and its twin, stay on one side). `cfg.objective` must be set (see `prepare_data`)."""
    raw_train = load_source(cfg, "train")
    raw_test = load_source(cfg, "test")
    issues = list(raw_train.issues) + (list(raw_test.issues) if raw_test is not None else [])
    if len(raw_train) < 2:
        raise DataError(f"{raw_train.file}: only {len(raw_train)} usable training row(s); expected at least 2")
    if label_names is None:
        label_names = label_vocabulary_of(raw_train, cfg.objective)  # from all training rows: the val carve adds none
    else:
        raw_train = check_known_labels(raw_train, label_names, cfg.objective, on_error=cfg.on_error, issues=issues)
    if raw_test is not None:
        raw_test = check_known_labels(raw_test, label_names, cfg.objective, on_error=cfg.on_error, issues=issues)
    groups = raw_train.row_groups()  # (N,)
    train_rows, val_rows = split_by_group(groups, cfg.val_fraction, cfg.split_seed, raw_train.file)
    return RawSplits(raw_train.select(train_rows), raw_train.select(val_rows), raw_test, label_names, issues)


def train_tokenizer(cfg: DataConfig, raw_train: RawSplit) -> TextTokenizer:
    """A tokenizer trained on the training split's texts with the data section's settings."""
    return TextTokenizer.train(
        (cell for row in raw_train.texts for cell in row),
        kind=cfg.tokenizer,
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        lowercase=cfg.lowercase,
        strip_punctuation=cfg.strip_punctuation,
        max_length=cfg.max_text_length,
    )


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
