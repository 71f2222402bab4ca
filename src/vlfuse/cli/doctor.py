"""`vlfuse doctor`: the optional parts, installed or not, with the command that installs each missing one."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from vlfuse.cli.app import app, console


@app.command()
def doctor(json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Check every optional part (weights packages, Debian data, Chromium, FAISS, ONNX Runtime, decoders); exit 1
    when one is missing, after printing the exact command that installs it."""
    import platform

    import torch

    from vlfuse.doctor import examine

    findings = examine()
    missing = [f for f in findings if not f.ok]
    if json_:
        print(json.dumps([f.__dict__ for f in findings], indent=1))
    else:
        capability = torch.backends.cpu.get_cpu_capability()
        console.print(f"Python {platform.python_version()}, torch {torch.__version__} (CPU: {capability}, "
                      f"{torch.get_num_threads()} threads, CUDA: {torch.cuda.is_available()})")  # fmt: skip
        table = Table(title="optional parts")
        for column in ("part", "status", "needed for", "to install"):
            table.add_column(column, overflow="fold")
        for f in findings:
            table.add_row(f.name, "[green]ok[/green]" if f.ok else "[red]missing[/red]", f.needed_for,
                          "" if f.ok else f.fix)  # fmt: skip
        console.print(table)
        console.print(f"{len(missing)} missing part(s)" if missing else "every optional part is installed")
    if missing:
        raise typer.Exit(1)
