"""Reading the packed format: one shard's samples (tar members grouped by key), opened by WebDataset's `gopen` (local
paths, `pipe:` commands, http/s), with a cut or short shard reported by URL; `.npy` pixels."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
