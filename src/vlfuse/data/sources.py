"""Where a split's rows come from (built-in or table), row limits and label checks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vlfuse.config import DataConfig, VideoDataConfig
from vlfuse.data.builtin import BUILTIN_DATASETS, load_builtin
from vlfuse.data.labels import format_names, label_vocabulary, unknown_labels
from vlfuse.data.splits import DataIssue, RawSplit, sample_rows
from vlfuse.data.tables import load_table_split
from vlfuse.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def table_path(cfg: DataConfig, which: str, expected: str) -> str | None:
    """data.path ("train") or data.test_path ("test") of a `data.name: table` config; a missing train table is a
    DataError that says what the table must hold (`expected`); a missing test table is None (no test set)."""
    path = cfg.path if which == "train" else cfg.test_path
    if path is None and which == "train":
        raise DataError(f"data.path is required when data.name is 'table' ({expected})")
    return path


def load_source(cfg: DataConfig, which: str) -> RawSplit | None:
    """The "train" or "test" rows named by `cfg`, with data.limit / data.test_limit applied; None: no test set."""
    limit = cfg.limit if which == "train" else cfg.test_limit
    if cfg.name == "table":
        path = table_path(cfg, which, "a CSV, JSONL or Parquet file")
        if path is None:
            return None
        if isinstance(cfg, VideoDataConfig):
            return load_video_table(path, cfg, limit=limit)
        return load_table_split(path, cfg, limit=limit, seed=cfg.split_seed)
    if cfg.name not in BUILTIN_DATASETS:
        raise DataError(f"unknown data.name {cfg.name!r}; expected 'table' or one of {', '.join(BUILTIN_DATASETS)}")
    if cfg.path is not None or cfg.test_path is not None:
        raise DataError(f"data.path / data.test_path are for data.name 'table'; the built-in {cfg.name!r} uses neither")
    raw = load_builtin(cfg.name, which, cfg)
    if limit is not None and limit < len(raw):
        log.info("%s: using %d of its %d rows (limit)", raw.file, limit, len(raw))
        groups = None if raw.image_index is None and raw.groups is None else raw.row_groups()
        raw = raw.select(sample_rows(len(raw), limit, cfg.split_seed, groups))
    return raw


def load_video_table(
    source: str | Path | pd.DataFrame, cfg: VideoDataConfig, *, limit: int | None = None, with_labels: bool = True
) -> RawSplit:
    """A table whose `data.video_column` names clips (video files or folders of frames): each distinct clip decoded
    once to `data.video.kept_frames` frames — (M, F, C, S, S) uint8 — bad clips reported by row like bad images."""
    from functools import partial

    from vlfuse.data.video import limits_of, load_videos

    video = cfg.video
    decode = partial(load_videos, frames=video.kept_frames, size=cfg.image_size, channels=cfg.channels, fps=video.fps,
                     limits=limits_of(video), fit=cfg.fit)  # fmt: skip
    as_media = cfg.model_copy(update={"image_column": cfg.video_column})  # the table reader's media column
    return load_table_split(source, as_media, limit=limit, seed=cfg.split_seed, with_labels=with_labels,
                            decode=decode)  # fmt: skip


def label_vocabulary_of(raw: RawSplit, objective: str) -> list[str]:
    if raw.labels is None:
        raise DataError(f"{raw.file}: no labels (column '{raw.label_column}'); training needs labelled rows")
    return label_vocabulary(
        raw.labels, objective, known_order=raw.label_names, source=raw.file, column=raw.label_column
    )


def check_known_labels(
    raw: RawSplit, label_names: list[str], objective: str, *, on_error: str, issues: list[DataIssue]
) -> RawSplit:
    """Raise (or, under skip, record in `issues` and drop) rows whose label was not seen in training."""
    if raw.labels is None:
        return raw
    bad = unknown_labels(raw.labels, label_names, objective)
    if not bad:
        return raw
    known = format_names(label_names)
    if on_error == "raise":
        pos, name = bad[0]
        raise DataError(
            f"{raw.file}, row {raw.source_rows[pos]}, column '{raw.label_column}': label {name!r} was not seen in "
            f"training; known labels: {known}"
        )
    new = [
        DataIssue(raw.file, raw.source_rows[pos], raw.label_column, f"label {name!r} was not seen in training")
        for pos, name in bad
    ]
    issues.extend(new)
    log.warning("%s: skipping %d row(s) with labels not seen in training; first: %s", raw.file, len(new), new[0])
    drop = {pos for pos, _ in bad}
    if len(drop) == len(raw):
        raise DataError(f"{raw.file}: no row has a label seen in training; known labels: {known}")
    return raw.select([i for i in range(len(raw)) if i not in drop])
