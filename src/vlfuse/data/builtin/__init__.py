"""Built-in datasets, by `data.name` (one module each; their loaders and options in `catalog`).

The names are listed here so that `vlfuse list` names them without loading torch; everything else the package
offers is `catalog`'s, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

VIDEO_BUILTINS = ("moving-shapes",)  # built-ins of clips (a video config's data); the others hold images
BUILTIN_NAMES = ("easy-vqa", "fashion-mnist", "fashion-mnist-pairs", "marketplace", "tuxpaint", "moving-shapes")


def __getattr__(name: str) -> Any:
    catalog = importlib.import_module("vlfuse.data.builtin.catalog")  # not a from-import: that asks this hook again
    try:
        return getattr(catalog, name)
    except AttributeError:
        raise AttributeError(f"module 'vlfuse.data.builtin' has no attribute {name!r}") from None
