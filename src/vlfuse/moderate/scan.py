"""A resumable batch scan: every item of a source → one JSON line of decisions, micro-batched, exactly once.

The output holds one line per item, in source order, each written whole with one `write` per micro-batch. A scan
that was killed (even with SIGKILL) is continued by running the same command again: the output's complete lines are
counted (a torn last line is cut off and that item scanned again), checked to be items 0..n-1 of the same scan
(`<out>.scan.json` records the run, the source — for a table also its size and modification time — and the
options that change the items), and the source is read on from item n. So after any number of
kills and re-runs the output holds every item exactly once. Memory stays flat: items stream through, and resuming
reads the output line by line.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from vlfuse.atomic import atomic_write_text
from vlfuse.data.images import load_images
from vlfuse.data.text import require_text
from vlfuse.errors import DataError, VLFuseError
from vlfuse.moderate.run import ModerateRun
from vlfuse.moderate.sources import ScanItem, scan_items
from vlfuse.parallel import Share

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 10_000


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".scan.json")


@dataclass
class ScanState:
    done: int  # items already in the output
    torn: bool  # a torn last line was cut off


def resume_state(
    out: Path, fingerprint: dict[str, Any], *, overwrite: bool, first: int = 0, stride: int = 1
) -> ScanState:
    """How far an earlier run of the same scan got; starts a new output when there is none (or `overwrite`). Line k
    of the output is item `first + k * stride` (a process's part of a shared scan holds every stride-th item).

    Raises:
        DataError: the output belongs to another scan (another run or source), or is not a scan output.
    """
    meta = meta_path(out)
    if overwrite or not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"")
        atomic_write_text(meta, json.dumps(fingerprint, indent=1))
        return ScanState(0, False)
    recorded = json.loads(meta.read_text()) if meta.is_file() else None
    if recorded != fingerprint:
        what = "has no record of the scan that wrote it" if recorded is None else (
            f"was written by another scan ({', '.join(k for k in fingerprint if recorded.get(k) != fingerprint[k])} "
            "differ)")  # fmt: skip
        raise DataError(f"output '{out}' {what}; pass --overwrite to start it again, or choose another --out")
    done, end, last = 0, 0, None
    with open(out, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # a torn last line: cut below
            end += len(line)
            last = line
            done += 1
    size = out.stat().st_size
    torn = end < size
    if torn:
        with open(out, "r+b") as f:
            f.truncate(end)
        log.warning("%s: cut a torn last line (an interrupted write); that item is scanned again", out)
    if last is not None:
        try:
            position = json.loads(last)["item"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"output '{out}', line {done}: not a scan result line; pass --overwrite") from None
        expected = first + (done - 1) * stride
        if position != expected:
            raise DataError(f"output '{out}': line {done} is item {position}, expected item {expected}; the file was "
                            "changed by something else than this scan; pass --overwrite")  # fmt: skip
    return ScanState(done, torn)


def _batches(items: Iterator[ScanItem], size: int) -> Iterator[list[ScanItem]]:
    while batch := list(islice(items, size)):
        yield batch


def _prepare(run: ModerateRun, batch: list[ScanItem]) -> None:
    """Decode the batch's image files and check its texts; failures become the items' errors."""
    size, channels = run.cfg.data.image_size, run.cfg.data.channels
    files = [(i, item.image) for i, item in enumerate(batch) if isinstance(item.image, str) and item.error is None]
    if files:
        pixels, errors = load_images([f for _, f in files], size=size, channels=channels)  # (n, C, S, S)
        for j, (i, _) in enumerate(files):
            if j in errors:
                batch[i].error = str(errors[j])
            else:
                batch[i].image = pixels[j]
    for item in batch:
        if item.error is None and item.text is not None:
            try:
                item.text = require_text(item.text, f"{item.id}: text", max_chars=MAX_TEXT_CHARS)
            except DataError as err:
                item.error = str(err)


def _score(run: ModerateRun, items: list[ScanItem], attribute: bool) -> list[dict[str, Any]]:
    """Verdict records for good items; a whole-batch failure (e.g. a modality the model cannot do without) is
    retried item by item so that each item gets its own error."""
    images = [it.image for it in items] if run.model.image_encoder is not None else None
    texts = [it.text for it in items] if run.model.text_encoder is not None else None
    try:
        return [v.as_dict() for v in run.moderate(images, texts, attribute=attribute)]
    except (ValueError, VLFuseError) as err:
        if len(items) == 1:
            return [{"decision": "error", "error": f"{items[0].id}: {err}"}]
        return [record for item in items for record in _score(run, [item], attribute)]


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write to a regular file may be partial, e.g. on a full disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _scan_into(
    path: Path, items: Iterator[ScanItem], run: ModerateRun, *, batch_size: int, attribute: bool, done: int,
    progress: Callable[[int, int], None] | None,
) -> int:  # fmt: skip
    """Score `items` and append their lines to `path` (one write per micro-batch); return how many were scanned."""
    new = 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        for batch in _batches(items, batch_size):
            _prepare(run, batch)
            good = [it for it in batch if it.error is None]
            records = iter(_score(run, good, attribute)) if good else iter(())
            lines = []
            for item in batch:
                record = {"decision": "error", "error": item.error} if item.error is not None else next(records)
                line = {"item": item.position, "id": item.id, **record, "image": item.image_ref}
                if item.truth is not None:
                    line["truth"] = item.truth
                lines.append(json.dumps(line))
            _write_all(fd, ("\n".join(lines) + "\n").encode())
            new += len(batch)
            if progress is not None:
                progress(new, done + new)  # (scanned by this call, now in the output)
    finally:
        os.close(fd)
    return new


def _merge_parts(out: Path, parts: list[Path]) -> None:
    """Append the processes' part outputs to `out` in item order (a kill mid-way leaves whole lines in order, plus at
    most a torn one that resuming cuts), then remove the parts."""
    handles = [open(part, "rb") for part in parts]  # noqa: SIM115 — closed below
    try:
        merged = heapq.merge(*handles, key=lambda line: json.loads(line)["item"])
        fd = os.open(out, os.O_WRONLY | os.O_APPEND)
        try:
            while chunk := list(islice(merged, 1024)):
                _write_all(fd, b"".join(chunk))
        finally:
            os.close(fd)
    finally:
        for handle in handles:
            handle.close()
    for part in parts:
        part.unlink()
        meta_path(part).unlink(missing_ok=True)


def scan(
    run: ModerateRun, source: str, out: str | Path, *, batch_size: int = 256, limit: int | None = None,
    overwrite: bool = False, attribute: bool = False, allow_outside_root: bool = False,
    image_column: str | None = None, text_column: str | None = None,
    progress: Callable[[int, int], None] | None = None, share: Share | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """Scan SOURCE into OUT (JSON lines), resuming an earlier interrupted run of the same scan.

    With `share` (`vlfuse moderate --nproc P`), the items OUT does not hold yet are dealt round robin to the processes;
    each writes its own resumable part (`OUT.part<r>-of-<P>`), and the main process appends the parts to OUT in item
    order. Killed at any point and re-run, every item ends in OUT once.

    Returns:
        {"items": total in the output, "new": scanned by this call, "resumed_from": items already there,
         "seconds", "items_per_s"} — on the main process; None on the others.
    """
    share = share or Share()
    out = Path(out)
    where = str(Path(source).resolve()) if source != "-" and Path(source).exists() else source
    fingerprint = {"run": str(run.path.resolve()), "source": where, "limit": limit, "image_column": image_column,
                   "text_column": text_column}  # fmt: skip
    if Path(where).is_file():  # a table edited between a kill and the re-run would shift the items
        stat = Path(where).stat()
        fingerprint |= {"source_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}
    state = resume_state(out, fingerprint, overwrite=overwrite) if share.is_main else None
    done = share.broadcast(state.done if state else 0)
    items = scan_items(source, run.cfg.data, allow_outside_root=allow_outside_root, image_column=image_column,
                       text_column=text_column)  # fmt: skip
    if limit is not None:
        items = islice(items, limit)
    items = islice(items, done, None)
    start = time.perf_counter()
    if share.world == 1:
        new = _scan_into(out, items, run, batch_size=batch_size, attribute=attribute, done=done, progress=progress)
    else:
        part = out.with_name(f"{out.name}.part{share.rank}-of-{share.world}")
        part_print = {**fingerprint, "start": done, "rank": share.rank, "world": share.world}
        stale = meta_path(part).is_file() and json.loads(meta_path(part).read_text()) != part_print
        part_state = resume_state(part, part_print, overwrite=overwrite or stale, first=done + share.rank,
                                  stride=share.world)  # fmt: skip
        mine = islice((it for it in items if share.takes(it.position - done)), part_state.done, None)
        new = _scan_into(part, mine, run, batch_size=batch_size, attribute=attribute, done=done, progress=progress)
        new = sum(share.gather(new) or [0])
        share.barrier()
        if share.is_main:
            _merge_parts(out, [out.with_name(f"{out.name}.part{r}-of-{share.world}") for r in range(share.world)])
    if not share.is_main:
        return None
    seconds = time.perf_counter() - start
    return {"items": done + new, "new": new, "resumed_from": done, "cut_torn_line": state.torn,
            "seconds": round(seconds, 3), "items_per_s": round(new / seconds, 1) if seconds > 0 else None}  # fmt: skip
