"""`vlfuse data pack`: any table, folder or built-in set → WebDataset tar shards per split plus an index.

One packed sample is one image with all of its rows (a VQA image and its ~10 questions), so streaming keeps
`group_by_image`'s saving and stores each image once:

    DIR/train-000000.tar …   members <key>.png / .jpg … (a table's image file, as it is) or <key>.npy (a built-in
                             set's decoded pixels, (C, H, W) uint8; a clip's decoded frames, (F, C, H, W) — video
                             files are decoded once, here, under data.video's limits) + <key>.json
                             {"rows": [{"texts": [...], "label": ..., "row": n, "ids": [token ids]}], "source": …}
    DIR/val-000000.tar …     the validation rows, carved from train exactly as in-memory training carves them
    DIR/test-000000.tar …
    DIR/index.json           shard names, sample and row counts per split, label vocabulary, objective, data settings
    DIR/tokenizer.json       trained on the training split's texts (as in-memory training does); every row also
                             carries its token ids, so streaming with this tokenizer does not tokenize again

Training then starts without a pass over the data. Built-in sets hold decoded images, which are stored as they are
(.npy at `data.image_size`); `--repeat K` writes K copies of the training split, copies after the first augmented with
`data.augment` (a way to make a large set from a small one, e.g. for measuring streaming at a million rows).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlfuse.atomic import atomic_write_text
from vlfuse.config import DataConfig, VideoDataConfig
from vlfuse.data.builtin import default_objective
from vlfuse.data.prepare import load_raw_splits, train_tokenizer
from vlfuse.data.shard_io import INDEX_FORMAT, INDEX_NAME
from vlfuse.data.splits import RawSplit
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import build_augmenter
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

ORIGINAL_EXTENSIONS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".bmp": "bmp", ".gif": "gif"}


@dataclass
class PackResult:
    out: Path
    splits: dict[str, dict[str, Any]]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.splits.values())


def parse_size(text: str) -> int:
    """'256MB', '1.5GB', '500kB' or a plain byte count → bytes."""
    units = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1}
    raw = text.strip().lower()
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)].strip(), factor
            break
    else:
        scale = 1
    try:
        value = float(raw) * scale
    except ValueError:
        raise DataError(f"shard size {text!r}: expected a size such as 256MB, 1GB or 500kB") from None
    if value < 1024:
        raise DataError(f"shard size {text!r} is under 1 kB; expected a size such as 256MB")
    return int(value)


def _npy(image: torch.Tensor) -> bytes:
    """(C, H, W) uint8 pixels — or a clip's (F, C, H, W) frames — → .npy bytes. Built-in sets hold decoded pixels, not
    files: stored as they are, they cost
    nothing to decode when streamed (PNG: ~190 µs an image at 64 px, the largest part of a worker's time)."""
    buffer = io.BytesIO()
    np.save(buffer, image.numpy(), allow_pickle=False)
    return buffer.getvalue()


def _original_bytes(source: str) -> tuple[str, bytes] | None:
    """A table image's own file (extension, bytes), when the source is a readable image file."""
    path = Path(source)
    ext = ORIGINAL_EXTENSIONS.get(path.suffix.lower())
    if ext is None or not path.is_file():
        return None
    return ext, path.read_bytes()


def _rows_by_image(raw: RawSplit) -> list[list[int]]:
    """For each unique image, the positions of its rows (in row order)."""
    groups: list[list[int]] = [[] for _ in range(len(raw.images))]
    for position, image in enumerate(raw.image_index.tolist()):
        groups[image].append(position)
    return groups


class _ShardSink:
    """Writes samples into `<name>-000000.tar`, `<name>-000001.tar` …, starting a new shard once the current one's
    size on disk (tar headers and padding included) reaches `max_bytes`."""

    def __init__(self, out: Path, name: str, max_bytes: int) -> None:
        self.out, self.name, self.max_bytes = out, name, max_bytes
        self.names: list[str] = []
        self.counts: list[int] = []
        self.file = self.writer = None

    def write(self, sample: dict[str, Any]) -> None:
        import webdataset as wds

        if self.writer is None or self.file.tell() >= self.max_bytes:
            self.close()
            self.names.append(f"{self.name}-{len(self.names):06d}.tar")
            self.counts.append(0)
            self.file = open(self.out / self.names[-1], "wb")  # noqa: SIM115 — closed in close()
            self.writer = wds.TarWriter(self.file)
        self.writer.write(sample)
        self.counts[-1] += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.file.close()
            self.writer = self.file = None


def _token_ids(raw: RawSplit, tokenizer: TextTokenizer | None) -> list[list[int]] | None:
    """Each row's token ids without padding (streaming then skips tokenizing), or None for data without text."""
    if tokenizer is None or raw.texts is None:
        return None
    ids, mask = tokenizer.encode_arrays(raw.texts)  # (N, L), (N, L)
    return [row[keep].tolist() for row, keep in zip(ids, mask, strict=True)]


def _write_split(
    raw: RawSplit, name: str, out: Path, shard_bytes: int, *, copies: int, augment: torch.nn.Module | None, seed: int,
    tokenizer: TextTokenizer | None,
) -> dict[str, Any]:  # fmt: skip
    rows_of = _rows_by_image(raw)
    ids = _token_ids(raw, tokenizer)
    records = [
        [{"texts": raw.texts[i] if raw.texts is not None else [], "label": raw.labels[i] if raw.labels else None,
          "row": raw.source_rows[i], **({"ids": ids[i]} if ids is not None else {})} for i in rows]
        for rows in rows_of
    ]  # fmt: skip
    sink = _ShardSink(out, name, shard_bytes)
    try:
        for copy in range(copies):
            images = raw.images  # (M, C, H, W) uint8
            if copy > 0 and augment is not None:
                torch.manual_seed(seed * 1000 + copy)
                images = torch.cat([
                    (augment(chunk.float() / 255).clamp(0, 1) * 255).round().to(torch.uint8)
                    for chunk in images.split(512)
                ])  # fmt: skip
            for image_no, rows in enumerate(records):
                if not rows:
                    continue
                source = raw.image_sources[image_no]
                original = _original_bytes(source) if copy == 0 or augment is None else None
                ext, data = original if original is not None else ("npy", _npy(images[image_no]))
                record = {"rows": rows, "source": source if copy == 0 else f"{source} (copy {copy})"}
                sink.write({"__key__": f"{copy:03d}{image_no:09d}", ext: data, "json": json.dumps(record).encode()})
    finally:
        sink.close()
    return {"shards": sink.names, "samples": sum(sink.counts), "rows": sum(len(r) for r in records) * copies,
            "copies": copies, "shard_samples": sink.counts,
            "shard_bytes": [(out / s).stat().st_size for s in sink.names]}  # fmt: skip


def folder_table(folder: str | Path, out: str | Path) -> tuple[Path, bool]:
    """An image folder as a table to pack, written to OUT/folder.csv: one subfolder per class (ImageFolder's layout)
    gives the labels, and an image's sidecar caption (`cat.jpg` + `cat.txt`) its text when every image has one.
    Returns the table and whether it has a text column.

    Raises:
        DataError: no class subfolders, or no image in them.
    """
    folder, out = Path(folder).absolute(), Path(out)
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    rows = [{"image": str(image), "label": cls.name}  # absolute: the table is not beside the images
            for cls in classes for image in sorted(cls.rglob("*"))
            if image.suffix.lower() in ORIGINAL_EXTENSIONS and image.is_file()]  # fmt: skip
    if not rows:
        raise DataError(f"folder '{folder}': no images in class subfolders; expected e.g. {folder}/cat/1.jpg, "
                        f"{folder}/dog/2.png (one subfolder per label)")  # fmt: skip
    captions = [Path(row["image"]).with_suffix(".txt") for row in rows]
    has_text = all(c.is_file() for c in captions)
    if has_text:
        for row, caption in zip(rows, captions, strict=True):
            row["text"] = caption.read_text(encoding="utf-8").strip()
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    table = out / "folder.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table, has_text


def pack(cfg: DataConfig, out: str | Path, *, shard_size: str = "256MB", repeat: int = 1) -> PackResult:
    """Pack the data described by `cfg` into WebDataset shards under `out` (see the module docstring).

    Raises:
        DataError: `out` already holds packed shards, the source has no images, or the shard size is unreadable.
    """
    started = time.perf_counter()
    out = Path(out)
    shard_bytes = parse_size(shard_size)
    if repeat < 1:
        raise DataError(f"--repeat {repeat}: expected at least 1 copy of the training split")
    if (out / INDEX_NAME).exists() or any(out.glob("*.tar")):
        raise DataError(f"{out} already holds packed shards; choose an empty folder (or delete it)")
    if cfg.objective is None:
        cfg = cfg.model_copy(update={"objective": default_objective(cfg.name)})
    raw = load_raw_splits(cfg)
    if raw.train.images is None:
        raise DataError(f"{raw.train.file}: no images to pack; `vlfuse data pack` writes image + text samples")
    out.mkdir(parents=True, exist_ok=True)
    video = isinstance(cfg, VideoDataConfig)  # clips: (M, F, C, S, S), packed as their decoded frames
    augment = build_augmenter(cfg.augment, video=video) if repeat > 1 else None
    if repeat > 1 and augment is None:
        log.warning("--repeat %d with no data.augment set: the copies of the training split are identical", repeat)
    tokenizer = train_tokenizer(cfg, raw.train) if raw.train.texts is not None else None
    splits = {"train": _write_split(raw.train, "train", out, shard_bytes, copies=repeat, augment=augment,
                                    seed=cfg.split_seed, tokenizer=tokenizer)}  # fmt: skip
    for name, split in (("val", raw.val), ("test", raw.test)):
        if split is not None and len(split):
            splits[name] = _write_split(split, name, out, shard_bytes, copies=1, augment=None, seed=cfg.split_seed,
                                        tokenizer=tokenizer)  # fmt: skip
    if tokenizer is not None:
        tokenizer.save(out / "tokenizer.json")
    seconds = time.perf_counter() - started
    index = {
        "format": INDEX_FORMAT, "source": raw.train.file, "objective": cfg.objective,
        "label_names": raw.label_names, "text_columns": raw.train.text_columns or ["text"],
        "tokenizer": None if tokenizer is None else "tokenizer.json", "splits": splits,
        "data": cfg.model_dump(include={"name", "image_size", "channels", "fit", "max_text_length", "tokenizer",
                                        "vocab_size", "min_frequency", "lowercase", "strip_punctuation",
                                        "val_fraction", "split_seed", "limit", "test_limit", "augment",
                                        *(["video"] if video else [])}),
        "skipped_rows": [issue.__dict__ for issue in raw.issues],
        "packed_seconds": round(seconds, 2),
    }  # fmt: skip
    atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1))
    return PackResult(out, splits, seconds)
