"""The `vlfuse` command line: parse → library call → print. Commands live in one module per area; each registers
itself on the `app` of `vlfuse.cli.app`."""

from vlfuse.cli import doctor, explain, generate, moderate, ood, retrieval, runs, scale  # noqa: F401  (register them)
from vlfuse.cli.app import app, main

__all__ = ["app", "main"]
