"""What `vlfuse moderate RUN SOURCE` scans, one item at a time (memory flat in the number of items).

SOURCE forms:
- a built-in split with text ("marketplace:test"), pre-decoded; its items carry their true labels;
- a folder: every image file under it (recursively, sorted by path), image only;
- a table (CSV / TSV / JSONL / Parquet), read in chunks: the image column (the run's, else "image") and the text
  column (the run's first, else "text"; or as given), its label column when present (true labels, for the report),
  an `id` column when present. An empty cell means the item has no such input (CSV cannot tell empty from absent); a
  text of nothing but whitespace or control characters is an error;
- "-": JSON lines on stdin, each {"id": …, "image": PATH, "text": …} (either of image / text may be absent).

Items are numbered by their position in the source; a bad item (missing or corrupt image, empty text, a row that is
not JSON) is still an item: it carries an error and is written to the output as such, never dropped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlfuse.config import DataConfig
from vlfuse.data.builtin import BUILTIN_DATASETS, SPLITS, load_builtin
from vlfuse.errors import DataError
from vlfuse.retrieval.sources import IMAGE_SUFFIXES

TABLE_CHUNK = 2048  # rows read at a time from a table


@dataclass
class ScanItem:
    position: int
    id: str
    image: torch.Tensor | str | None  # (C, S, S) uint8 pixels, a file path, or None
    text: str | None
    truth: list[str] | None = None  # true labels, when the source has them
    error: str | None = None  # why this item cannot be scored
    image_ref: str | None = None  # where its image can be found again: a file path or a built-in item id


def _builtin_items(spec: str, cfg: DataConfig) -> Iterator[ScanItem]:
    name, _, split = spec.partition(":")
    raw = load_builtin(name, split, cfg.model_copy(update={"name": name}))
    if raw.texts is None or raw.images is None:
        raise DataError(f"source '{spec}': built-in '{name}' has no images and texts to moderate")
    index = raw.image_index.tolist()
    for i in range(len(raw)):
        truth = raw.labels[i] if raw.labels is not None else None
        yield ScanItem(i, f"{spec}/{i}", raw.images[index[i]], raw.texts[i][0],
                       [truth] if isinstance(truth, str) else truth, image_ref=f"{spec}/{i}")  # fmt: skip


def _rows(path: Path, encoding: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(1-based row, row mapping or None, error) of a table, in chunks."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with open(path, encoding=encoding, errors="replace") as f:
            yield from _json_lines(f)
        return
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=TABLE_CHUNK):
            for record in batch.to_pylist():
                row += 1
                yield row, record, None
        return
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        row = 0
        sep = "\t" if suffix == ".tsv" else ","
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=TABLE_CHUNK,
                             encoding=encoding, encoding_errors="replace")  # fmt: skip
        for chunk in reader:
            for record in chunk.to_dict("records"):
                row += 1
                yield row, record, None
        return
    raise DataError(f"table '{path}': unsupported file type '{suffix}'; expected .csv, .tsv, .jsonl or .parquet")


def _json_lines(lines) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            yield row, None, f"not a JSON object ({err.msg} at column {err.colno})"
            continue
        yield (row, record, None) if isinstance(record, dict) else (row, None, "not a JSON object")


def _column(record: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    """The first of `names` the record has (its name and value); the first name and None when it has none."""
    for name in names:
        if name in record:
            return name, record[name]
    return names[0], None


def _record_items(
    rows: Iterator[tuple[int, dict[str, Any] | None, str | None]], where: str, base: Path, cfg: DataConfig,
    allow_outside_root: bool, image_columns: tuple[str, ...], text_columns: tuple[str, ...],
) -> Iterator[ScanItem]:  # fmt: skip
    from vlfuse.data.tables import resolve_image_path

    label_column = cfg.label_column
    folder = str(base.absolute())
    for position, (row, record, error) in enumerate(rows):
        item = ScanItem(position, f"{where}:{row}", None, None)
        if record is None:
            item.error = f"{where}, row {row}: {error}"
            yield item
            continue
        if record.get("id") not in (None, ""):
            item.id = str(record["id"])
        image_column, image = _column(record, image_columns)
        text_column, text = _column(record, text_columns)
        if isinstance(image, str) and image.strip():
            file, leaves = resolve_image_path(image.strip(), folder, folder)
            if leaves and not allow_outside_root:
                item.error = (f"{where}, row {row}, column '{image_column}': image path {image.strip()!r} leaves "
                              f"'{folder}'; expected a path inside it (or pass --allow-outside-root)")  # fmt: skip
            item.image = item.image_ref = file
        elif image not in (None, "") and not (isinstance(image, float) and image != image):  # NaN: an empty cell
            item.error = f"{where}, row {row}, column '{image_column}': expected an image path, got {image!r}"
        missing = text is None or text == "" or (isinstance(text, float) and text != text)  # NaN: an empty cell
        item.text = None if missing else str(text)
        truth = record.get(label_column)
        if isinstance(truth, str):
            item.truth = [t for t in truth.split(cfg.label_separator) if t] if truth else []
        elif isinstance(truth, list):
            item.truth = [str(t) for t in truth]
        if item.image is None and item.text is None and item.error is None:
            item.error = f"{where}, row {row}: neither an image ('{image_column}') nor a text ('{text_column}')"
        yield item


def scan_items(
    spec: str, cfg: DataConfig, *, allow_outside_root: bool = False, image_column: str | None = None,
    text_column: str | None = None,
) -> Iterator[ScanItem]:  # fmt: skip
    """The items of a SOURCE, in order (see the module docstring).

    Raises:
        DataError: the source does not exist or is of no known form (bad *items* are not raised: they carry errors).
    """
    name, _, split = spec.partition(":")
    if name in BUILTIN_DATASETS:
        if split not in SPLITS:
            raise DataError(f"source '{spec}': expected {name}:train or {name}:test")
        yield from _builtin_items(spec, cfg)
        return
    images = (image_column,) if image_column else tuple(dict.fromkeys((cfg.image_column, "image")))
    texts = (text_column,) if text_column else tuple(dict.fromkeys((*cfg.text_columns[:1], "text")))
    if spec == "-":
        yield from _record_items(_json_lines(sys.stdin), "stdin", Path.cwd(), cfg, True, images, texts)
        return
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"folder '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        for position, file in enumerate(files):
            yield ScanItem(position, str(file.relative_to(path)), str(file), None, image_ref=str(file))
        return
    if path.is_file():
        yield from _record_items(_rows(path, cfg.encoding), str(path), path.parent, cfg, allow_outside_root, images,
                                 texts)  # fmt: skip
        return
    builtins = ", ".join(f"{n}:test" for n, _ in BUILTIN_DATASETS.items() if n == "marketplace")
    raise DataError(f"source '{spec}' does not exist; expected a folder of images, a table (.csv, .tsv, .jsonl, "
                    f".parquet), '-' for JSON lines on stdin, or a built-in split such as {builtins}")  # fmt: skip
