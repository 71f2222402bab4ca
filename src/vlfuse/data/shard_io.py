"""Reading the packed format: its index (`ShardIndex`), one shard's samples (tar members grouped by key), opened by
WebDataset's `gopen` (local paths, `pipe:` commands, http/s), with a cut or short shard reported by URL; `.npy`
pixels."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vlfuse.data.text import TextTokenizer
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"  # beside the shards: what `vlfuse data pack` wrote (see vlfuse.data.pack)
INDEX_FORMAT = "vlfuse-shards/1"


@dataclass(frozen=True)
class Shard:
    """A shard's URL and, when the index knows them, its sample count and byte size (to tell a truncated one)."""

    url: str
    samples: int | None = None
    size: int | None = None


@dataclass
class ShardIndex:
    """A packed data set's index.json: where its shards are and what a model trained on it needs to know."""

    root: Path
    raw: dict[str, Any]
    train_pattern: str | None = None  # `data.shards` given as a brace pattern of training shards
    url: str | None = None  # `data.stream.url`: where shards are read from, "{name}" standing for a file name

    @classmethod
    def open(cls, location: str, url: str | None = None) -> ShardIndex:
        """`location`: the pack folder, its index.json, or a brace pattern of training shards (`DIR/train-{000000..
        000009}.tar`) beside an index.json. `url`: a template such as "pipe:aws s3 cp s3://bucket/{name} -" for
        shards kept elsewhere than the index (object storage, a web server)."""
        if url is not None and "{name}" not in url:
            raise DataError(f"data.stream.url {url!r}: expected a template holding {{name}} (a shard's file name)")
        pattern = location if location.endswith(".tar") else None
        path = Path(location)
        path = path.parent if pattern else path
        file = path / INDEX_NAME if path.is_dir() or pattern else path
        if not file.is_file():
            raise DataError(f"data.shards={location!r}: no {file} (expected the folder written by `vlfuse data pack`)")
        try:
            raw = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{file}: unreadable shard index ({err})") from None
        if raw.get("format") != INDEX_FORMAT:
            found = raw.get("format")
            raise DataError(f"{file}: format {found!r}, expected {INDEX_FORMAT!r} (from `vlfuse data pack`)")
        return cls(file.parent, raw, pattern, url)

    def has(self, split: str) -> bool:
        return split in self.raw["splits"]

    def shards(self, split: str) -> list[Shard]:
        """The split's shards: local names resolve against the index's folder; `pipe:`, `http://`, `s3://` … and
        absolute paths are used as they are (WebDataset opens them)."""
        if split == "train" and self.train_pattern:
            from braceexpand import braceexpand

            return [Shard(url) for url in braceexpand(self.train_pattern)]
        if not self.has(split):
            raise DataError(f"{self.root / INDEX_NAME}: no '{split}' split was packed")
        info = self.raw["splits"][split]
        names = info["shards"]
        counts = info.get("shard_samples") or [None] * len(names)
        sizes = info.get("shard_bytes") or [None] * len(names)
        return [Shard(self._locate(name), count, size) for name, count, size in zip(names, counts, sizes, strict=True)]

    def _locate(self, name: str) -> str:
        if self.url is not None:
            return self.url.replace("{name}", name)
        return name if ":" in name or name.startswith("/") else str(self.root / name)

    def rows(self, split: str) -> int:
        return int(self.raw["splits"][split]["rows"])

    def rows_per_sample(self, split: str) -> float:
        info = self.raw["splits"][split]
        return info["rows"] / max(1, info["samples"])

    @property
    def label_names(self) -> list[str]:
        return list(self.raw["label_names"])

    @property
    def objective(self) -> str:
        return self.raw["objective"]

    @cached_property
    def _packed_tokenizer(self) -> TextTokenizer | None:
        name = self.raw.get("tokenizer")
        return None if name is None else TextTokenizer.load(self.root / name)

    def tokenizer(self, max_length: int) -> TextTokenizer | None:
        """The packed tokenizer (rows carry its token ids), at `max_length` tokens."""
        tokenizer = self._packed_tokenizer
        if tokenizer is None:
            return None
        if tokenizer.max_length != max_length:
            log.info("data.max_text_length %d differs from the packed %d: using %d", max_length,
                     tokenizer.max_length, max_length)  # fmt: skip
            tokenizer = TextTokenizer.from_dict({**tokenizer.to_dict(), "max_length": max_length})
        return tokenizer

    def stored_ids_length(self, tokenizer: TextTokenizer | None) -> int | None:
        """When the packed rows carry `tokenizer`'s token ids (it is the packed tokenizer, whatever its max_length),
        the max_length they were cut at; else None."""
        if self._packed_tokenizer is None or tokenizer is None:
            return None
        packed = self._packed_tokenizer.to_dict()
        same = {**packed, "max_length": 0} == {**tokenizer.to_dict(), "max_length": 0}
        return packed["max_length"] if same else None


def _check_size(shard: Shard) -> str | None:
    path = Path(shard.url)
    if shard.size is None or ":" in shard.url or not path.is_file():
        return None
    actual = path.stat().st_size
    return None if actual == shard.size else f"{actual:,} bytes where the index says {shard.size:,} (truncated?)"


def _members(stream) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular file in a tar stream. A ~10× cheaper walk than `tarfile` in stream mode (116 µs a
    packed sample there, most of a worker's reading time); a stream cut short raises EOFError instead of ending."""
    long_name = None
    while True:
        header = stream.read(512)
        if len(header) < 512:
            raise EOFError(f"the tar ends inside a header ({len(header)} of 512 bytes)" if header else
                           "the tar ends without its end-of-archive blocks")  # fmt: skip
        if header == bytes(512):
            return  # end-of-archive
        name = header[:100].split(b"\0", 1)[0].decode()
        if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
            name = header[345:500].split(b"\0", 1)[0].decode() + "/" + name
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        data = stream.read(size)
        if len(data) < size:
            raise EOFError(f"the tar ends inside {name!r} ({len(data)} of {size} bytes)")
        stream.read(-size % 512)  # padding to the next block
        kind = header[156:157]
        if kind == b"x":  # a PAX header: its "path" record, if any, names the next member
            records = dict(line.split(b" ", 1)[1].split(b"=", 1) for line in data.splitlines() if b"=" in line)
            long_name = records.get(b"path", b"").decode() or None
        elif kind == b"L":  # a GNU long name
            long_name = data.rstrip(b"\0").decode()
        elif kind in (b"0", b"\0"):
            yield long_name or name, data
            long_name = None
        else:
            long_name = None


def _tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard (members grouped by key: `key.png` + `key.json`), opened by WebDataset's `gopen`
    (local paths, `pipe:` commands, http/s)."""
    from webdataset import gopen

    stream = gopen(url)
    try:
        sample: dict[str, Any] = {}
        for name, data in _members(stream):
            key, _, ext = Path(name).name.partition(".")
            key = str(Path(name).parent / key) if "/" in name else key
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample.setdefault("__key__", key)
            sample["__url__"] = url
            sample[ext.lower()] = data
        if sample:
            yield sample
    finally:
        stream.close()  # a pipe: command's failure is raised here


def read_shard(shard: Shard, on_error: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard; a shard that cannot be read to its end (missing, truncated, not a tar, fewer samples
    than packed) raises a DataError naming it, or under `on_error: skip` is logged and its readable samples kept."""
    def fail(problem: str) -> None:
        message = f"shard {shard.url}: {problem}; expected the complete tar written by `vlfuse data pack`"
        if on_error == "raise":
            raise DataError(message)
        log.warning("%s; kept the %d sample(s) that could be read (data.on_error=skip)", message, count)

    count, size_problem = 0, _check_size(shard)
    if size_problem and on_error == "raise":
        fail(size_problem)  # before any of its samples is used
    try:
        for sample in _tar_samples(shard.url):
            count += 1
            yield sample
    except Exception as err:  # noqa: BLE001 — tarfile, gzip, OSError and pipe errors all mean a bad shard
        fail(f"unreadable after {count} sample(s) ({type(err).__name__}: {err})")
        return
    if shard.samples is not None and count != shard.samples:
        fail(f"{count} sample(s) where the index says {shard.samples}")
    elif size_problem:
        fail(size_problem)


_NPY_HEADER = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+(?:, \d+){2,3})\), \}")


def npy_pixels(data: bytes, where: str) -> np.ndarray:
    """.npy bytes of (C, H, W) uint8 pixels, or a clip's (F, C, H, W) frames (as `vlfuse data pack` writes them) → the
    array. The header is matched, not evaluated: `np.load` spends ~120 µs on it (`ast.literal_eval`), more than the
    rest of a sample's work."""
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise DataError(f"{where}: not .npy data; expected (C, H, W) uint8 pixels written by `vlfuse data pack`")
    start = 10 + int.from_bytes(data[8:10], "little") if data[6] == 1 else 12 + int.from_bytes(data[8:12], "little")
    match = _NPY_HEADER.match(data[10 if data[6] == 1 else 12 : start])
    shape = tuple(int(n) for n in match.group(1).split(b", ")) if match else None
    if shape is None or shape[-3] not in (1, 3) or len(data) - start != math.prod(shape):
        raise DataError(f"{where}: .npy pixels that are not (C, H, W) or (F, C, H, W) uint8 with C 1 or 3 (or are "
                        "cut short)")  # fmt: skip
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape).copy()  # writable, for torch
