"""vlfuse: vision-language fusion toolkit.

Example:
    >>> import vlfuse
    >>> run = vlfuse.train("configs/easy_vqa.yaml", run_dir="runs/vqa")
    >>> run.predict(image="shape.png", text="what color is the shape?")

`import vlfuse` loads the registries only; torch and the models load when first used, so the command line starts
at once.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

from vlfuse import components  # noqa: E402,F401  (fills the task registry; imports nothing heavy)
from vlfuse.registry import FUSIONS, HEADS, IMAGE_ENCODERS, TEXT_ENCODERS  # noqa: E402
from vlfuse.task import TASKS  # noqa: E402

__all__ = ["FUSIONS", "HEADS", "IMAGE_ENCODERS", "TASKS", "TEXT_ENCODERS", "evaluate", "load_run", "train"]
_API = ("evaluate", "load_run", "train")  # functions of vlfuse.api, imported on first use


def __getattr__(name: str) -> Any:
    if name in _API:
        from vlfuse import api

        return getattr(api, name)
    raise AttributeError(f"module 'vlfuse' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`vlfuse.train` stays the training function once the `vlfuse.train` subpackage is imported (importing a
    subpackage binds its name on the parent, which would hide the function)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
