"""The typer application, the shared console, generic printing, and `main` (errors → one line and exit code 2)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vlfuse.errors import VLFuseError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="vlfuse: vision-language fusion toolkit")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets; pack them into shards.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


MAX_COLUMNS = 6  # metric columns a table shows side by side before it turns to one row per metric


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """{"test": {"vqa": {...}, "caption": {...}}} → {"test/vqa": {...}, "test/caption": {...}}: one row per group of
    scalar metrics."""
    rows: dict[str, dict[str, Any]] = {}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    if scalars and prefix:
        rows[prefix] = scalars
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows.update(_flatten(value, f"{prefix}/{key}" if prefix else key))
    return rows


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_metrics(metrics: dict[str, Any], title: str = "metrics") -> None:
    """Metrics of any task as tables, one per set of metric names: a row per split (or split/objective), or — with
    many metrics — a row per metric and a column per split, so the table fits the terminal."""
    groups: dict[tuple[str, ...], list[tuple[str, dict[str, Any]]]] = {}
    for name, values in _flatten(metrics).items():
        groups.setdefault(tuple(sorted(values)), []).append((name, values))
    for keys, rows in groups.items():
        table = Table(title=title)
        if len(keys) <= MAX_COLUMNS:
            for column in ("split", *keys):
                table.add_column(column, justify="left" if column == "split" else "right")
            for name, values in rows:
                table.add_row(name, *[_cell(values[k]) for k in keys])
        else:
            table.add_column("metric")
            for name, _ in rows:
                table.add_column(name, justify="right")
            for key in keys:
                table.add_row(key, *[_cell(values[key]) for _, values in rows])
        console.print(table)


def main() -> None:
    """The `vlfuse` command. Click runs in its standalone mode, so a usage error (no arguments, an unknown command or
    option, a value of the wrong type) prints the usual usage screen and exits 2 — whichever click the installed typer
    bundles; vlfuse's own errors print one line and exit 2."""
    try:
        app(prog_name="vlfuse")
    except (VLFuseError, ValueError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
