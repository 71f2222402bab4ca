"""User tables (CSV / TSV / JSONL / JSON / Parquet or a pandas DataFrame) → a validated `RawSplit`.

Row numbers in messages are 1-based data rows (the first row after a CSV header is row 1).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vlfuse.config import DataConfig
from vlfuse.data.images import load_images
from vlfuse.data.splits import DataIssue, RawSplit, sample_rows
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
_FORMATS[".pq"] = "parquet"
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
DATAFRAME = "<DataFrame>"
UNDECODABLE = "vlfuse_undecodable"  # DataFrame.attrs key: the encoding some of the file's bytes were not valid in
# paths → (decoded (M, ...) uint8 tensor, position → DataError): how a table's media cells are decoded (images by
# default; clips for video data)
Decoder = Callable[[list[str]], tuple[torch.Tensor, dict[int, DataError]]]


def table_format(path: Path) -> str:
    """The reader for a table path, from its extension (a compression suffix such as .gz is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and path.suffix.lower() in _COMPRESSION):
        raise DataError(
            f"table '{path}' has an unknown extension '{''.join(path.suffixes) or '(none)'}'; expected one of "
            f"{', '.join(sorted(_FORMATS))} (CSV/TSV/JSONL may add .gz, .bz2, .xz, .zst or .zip)"
        )
    return fmt


def _read(path: Path, fmt: str, encoding: str, errors: str) -> pd.DataFrame:
    if fmt in ("csv", "tsv"):
        return pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False, na_values=[""],
                           encoding=encoding, encoding_errors=errors)  # fmt: skip
    if fmt in ("jsonl", "json"):
        return pd.read_json(path, lines=fmt == "jsonl", orient=None if fmt == "jsonl" else "records", dtype=False,
                            encoding=encoding, encoding_errors=errors)  # fmt: skip
    return pd.read_parquet(path)


def read_table(source: str | Path | pd.DataFrame, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a table file (or copy a DataFrame) into a DataFrame with a fresh 0-based index.

    CSV/TSV cells are read as strings (only empty cells count as missing), so texts like "NA" survive. Text files are
    decoded as `encoding`; when some bytes are not valid in it, the file is read again with those bytes replaced by
    U+FFFD and `df.attrs[UNDECODABLE]` set to the encoding, so `table_to_raw` reports (or skips) exactly the rows
    that hold them, by row and column, instead of failing the whole table.

    Raises:
        DataError: missing file, unknown extension, unreadable/malformed content.
    """
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    path = Path(source)
    fmt = table_format(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"table file '{path}' {what}; expected a {fmt.upper()} file")
    try:
        try:
            df = _read(path, fmt, encoding, "strict")
        except UnicodeDecodeError:
            df = _read(path, fmt, encoding, "replace")
            df.attrs[UNDECODABLE] = encoding
    except pd.errors.EmptyDataError:
        raise DataError(f"table file '{path}' is empty; expected a header row and data rows") from None
    except Exception as err:  # pandas / pyarrow raise many types for malformed input
        raise DataError(f"table file '{path}' cannot be read as {fmt.upper()}: {type(err).__name__}: {err}") from None
    return df.reset_index(drop=True)


def resolve_image_path(cell: str, base: str, root: str) -> tuple[str, bool]:
    """The path a table cell names, resolved against `base` (the table's folder), and whether it leaves `root`
    (after following symbolic links, so a link out of the folder counts as leaving it)."""
    path = os.path.normpath(os.path.join(base, os.path.expanduser(cell)))
    real_root = os.path.realpath(root)
    return path, os.path.commonpath([os.path.realpath(path), real_root]) != real_root


def check_columns(df: pd.DataFrame, required: Sequence[str], file: str) -> None:
    """Raise DataError listing the missing and the available columns."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        available = ", ".join(repr(str(c)) for c in df.columns) or "(none)"
        raise DataError(
            f"table '{file}' lacks the column(s) {', '.join(repr(c) for c in missing)}; available columns: {available}"
        )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _cell_text(value: Any) -> str | None:
    """A cell as a stripped string; None when missing or blank. Integral floats print without '.0'."""
    if _is_missing(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _cell_labels(value: Any, separator: str) -> list[str] | None:
    """A multilabel cell ("cat|dog" or a JSON/Parquet list) → distinct names in order; None when empty."""
    if isinstance(value, list | tuple | np.ndarray):
        parts = [_cell_text(v) for v in value]
    else:
        text = _cell_text(value)
        parts = [] if text is None else [p.strip() for p in text.split(separator)]
    names = list(dict.fromkeys(p for p in parts if p))
    return names or None


def _undecodable_cells(df: pd.DataFrame, columns: list[str]) -> dict[int, tuple[str, str]]:
    """position → (column, message) for rows with a cell holding bytes the file's encoding could not decode."""
    encoding = df.attrs.get(UNDECODABLE)
    found: dict[int, tuple[str, str]] = {}
    for col in columns if encoding else []:
        for pos, value in enumerate(df[col].tolist()):
            if isinstance(value, str) and "\ufffd" in value and pos not in found:
                hint = "set data.encoding to the file's encoding, e.g. latin-1 or cp1252"
                found[pos] = (col, f"holds bytes that are not valid {encoding} text (shown as '\ufffd': "
                                   f"{value[:60]!r}); {hint}")  # fmt: skip
    return found


def _image_paths(
    cells: list[Any], cfg: DataConfig, base: str, problems: dict[int, tuple[str, str]], file: str,
    row_numbers: list[int],
) -> list[str | None]:  # fmt: skip
    """Each row's image path resolved against `base` (None for a bad row, whose problem goes into `problems`). Paths
    that leave the data root (`cfg.root`, default `base`) are refused when `cfg.allow_outside_root` is false, else
    kept with one warning."""
    root = os.path.abspath(cfg.root) if cfg.root else base
    paths: list[str | None] = []
    outside: list[int] = []
    for pos, value in enumerate(cells):
        text = _cell_text(value)
        path, leaves = resolve_image_path(text, base, root) if text is not None else (None, False)
        if text is None:
            problems.setdefault(pos, (cfg.image_column, "empty image path; expected a path to an image file"))
        elif leaves and not cfg.allow_outside_root:
            message = f"image path {text!r} leaves the data root '{root}'; expected a path inside it"
            problems.setdefault(pos, (cfg.image_column, f"{message} (data.allow_outside_root is false)"))
        elif leaves:
            outside.append(pos)
        paths.append(path if pos not in problems else None)
    if outside:
        log.warning("%s: %d image path(s) leave the data root '%s' (first: row %d, %r); set data.allow_outside_root: "
                    "false to refuse them", file, len(outside), root, row_numbers[outside[0]],
                    _cell_text(cells[outside[0]]))  # fmt: skip
    return paths


def table_to_raw(
    df: pd.DataFrame,
    cfg: DataConfig,
    *,
    file: str,
    base_dir: str | Path,
    with_labels: bool = True,
    decode: Decoder | None = None,
) -> RawSplit:
    """Validate rows and decode images (each distinct resolved path once; `decode` for other media, e.g. clips).

    Row numbers come from the DataFrame index (0-based positions in the source) + 1.

    Raises:
        DataError: a missing column, or (on_error=raise) the first bad row, naming file / row / column.
    """
    image_col = cfg.image_column or None
    text_cols = list(cfg.text_columns)
    label_col = cfg.label_column if with_labels else None
    check_columns(df, [c for c in [image_col, *text_cols, label_col] if c], file)
    if len(df) == 0:
        raise DataError(f"table '{file}' has no data rows")
    row_numbers = [int(i) + 1 for i in df.index]
    problems: dict[int, tuple[str, str]] = {}  # position -> (column, message), first problem per row
    for pos, problem in _undecodable_cells(df, [c for c in [image_col, *text_cols, label_col] if c]).items():
        problems.setdefault(pos, problem)
    paths: list[str | None] = []
    if image_col:
        paths = _image_paths(df[image_col].tolist(), cfg, str(base_dir), problems, file, row_numbers)
    texts: list[list[str]] | None = [[] for _ in range(len(df))] if text_cols else None
    for col in text_cols:
        for pos, value in enumerate(df[col].tolist()):
            text = _cell_text(value)
            if text is None:
                problems.setdefault(pos, (col, "empty text; expected a non-empty string"))
            texts[pos].append(text or "")  # type: ignore[index]
    labels: list | None = None
    if label_col:
        multilabel = cfg.objective == "multilabel"
        labels = []
        for pos, value in enumerate(df[label_col].tolist()):
            label = _cell_labels(value, cfg.label_separator) if multilabel else _cell_text(value)
            if label is None:
                problems.setdefault(pos, (label_col, "missing label; expected a non-empty label value"))
            labels.append(label)

    images = image_index = None
    sources: list[str] = []
    if image_col:
        stop = len(df) if cfg.on_error == "skip" or not problems else min(problems) + 1  # raise: decode up to it
        todo = list(dict.fromkeys(p for p in paths[:stop] if p is not None))
        if decode is None:
            decoded, errors = load_images(todo, size=cfg.image_size, channels=cfg.channels)  # (U, C, S, S)
        else:
            decoded, errors = decode(todo)  # (U, ...)
        slot = {p: i for i, p in enumerate(todo)}
        for pos in range(stop):
            p = paths[pos]
            if p is not None and slot[p] in errors:
                problems[pos] = (image_col, str(errors[slot[p]]))  # the image comes first in a row
    issues = []
    for pos in sorted(problems):
        column, message = problems[pos]
        if cfg.on_error == "raise":
            raise DataError(f"{file}, row {row_numbers[pos]}, column '{column}': {message}")
        issues.append(DataIssue(file, row_numbers[pos], column, message))
    keep = [pos for pos in range(len(df)) if pos not in problems]
    if issues:
        log.warning("%s: skipping %d of %d rows (on_error=skip); first: %s", file, len(issues), len(df), issues[0])
    if not keep:
        raise DataError(f"table '{file}': all {len(df)} rows are bad; first problem: {issues[0]}")
    if image_col:
        used = list(dict.fromkeys(paths[pos] for pos in keep))
        where = {p: i for i, p in enumerate(used)}
        images = decoded[torch.tensor([slot[p] for p in used])]  # (M, C, S, S) or clips (M, F, C, S, S)
        image_index = torch.tensor([where[paths[pos]] for pos in keep], dtype=torch.long)  # (N,)
        sources = [p for p in used if p is not None]
    return RawSplit(
        file=file,
        images=images,
        image_index=image_index,
        texts=None if texts is None else [texts[pos] for pos in keep],
        labels=None if labels is None else [labels[pos] for pos in keep],
        image_sources=sources,
        source_rows=[row_numbers[pos] for pos in keep],
        text_columns=text_cols,
        label_column=label_col or "",
        issues=issues,
    )


def load_table_split(
    source: str | Path | pd.DataFrame,
    cfg: DataConfig,
    *,
    base_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    with_labels: bool = True,
    decode: Decoder | None = None,
) -> RawSplit:
    """Read a table and turn it into a RawSplit.

    Args:
        source: table path or DataFrame.
        cfg: the data config (columns, image size / channels, objective, on_error).
        base_dir: folder that relative image paths resolve against; default: the table's folder, or the current
            directory for a DataFrame. Paths must stay inside `cfg.root` (default: this folder); see `_image_paths`.
        limit: keep at most this many rows, a random sample (by `seed`) kept in table order, chosen before decoding.
        with_labels: False to read a table without a label column (prediction).
        decode: how the media cells are decoded (default: images at cfg.image_size).
    """
    df = read_table(source, cfg.encoding)
    if isinstance(source, pd.DataFrame):
        file, folder = DATAFRAME, Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        file, folder = str(source), Path(base_dir) if base_dir is not None else Path(source).parent
    if limit is not None and limit < len(df):
        groups = df[cfg.image_column].astype(str).to_numpy() if cfg.image_column in df.columns else None
        df = df.iloc[sample_rows(len(df), limit, seed, groups)]
        log.info("%s: using %d of its rows (limit)", file, limit)
    return table_to_raw(df, cfg, file=file, base_dir=os.path.abspath(folder), with_labels=with_labels, decode=decode)
