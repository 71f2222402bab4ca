"""Atomic file writes: a file is only ever replaced by a complete one.

The new content goes to a temporary name in the same folder (`.NAME.tmp-PID`), is fsynced, then `os.replace`d over
the old file, and the folder is fsynced. A crash at any point leaves the old complete file or the new complete one,
plus at worst a stray temporary file, which `stray_temp_files` finds so the next start can clean it up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` to fill a temporary file, then move it over `path` durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def stray_temp_files(folder: Path) -> Iterator[tuple[Path, Path]]:
    """(temporary file, the file it was to replace) for every temporary file under `folder` whose writer is gone
    (a live process's file is still being written and is left alone)."""
    for tmp in sorted(Path(folder).rglob(".*.tmp-*")):
        match = _TEMP_NAME.match(tmp.name)
        if match is None or not tmp.is_file() or _alive(int(match["pid"])):
            continue
        yield tmp, tmp.with_name(match["name"])


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, left by an earlier call in this process that was interrupted
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
