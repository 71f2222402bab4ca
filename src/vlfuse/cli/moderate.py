"""`vlfuse moderate RUN SOURCE --out decisions.jsonl`: a resumable batch scan with a summary report."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from vlfuse.cli.app import app, console, err_console, setup_logging


def _image_of(run, source: str):
    """A loader for a report sample's image: a file path, or a built-in item id ("marketplace:test/12")."""
    from functools import lru_cache

    from PIL import Image

    from vlfuse.data.builtin import BUILTIN_DATASETS, load_builtin

    @lru_cache(maxsize=2)
    def builtin(spec: str):
        name, _, split = spec.partition(":")
        return load_builtin(name, split, run.cfg.data.model_copy(update={"name": name}))

    def image_of(sample: dict[str, Any]):
        ref = sample.get("image")
        if not ref:
            return None
        spec, _, number = ref.rpartition("/")
        if spec.partition(":")[0] in BUILTIN_DATASETS and number.isdigit():
            raw = builtin(spec)
            pixels = raw.images[int(raw.image_index[int(number)])]  # (C, S, S)
            return Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy())
        try:
            with Image.open(ref) as im:
                return im.convert("RGB")
        except OSError:
            return None

    return image_of


def _scan_with_progress(loaded, source: str, out: Path, share, **options: Any) -> dict[str, Any] | None:
    """The scan, with a progress line on the main process."""
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from vlfuse.moderate.scan import scan

    if not share.is_main:
        return scan(loaded, source, out, share=share, **options)
    started = time.perf_counter()
    with Progress(TextColumn("[bold]moderate"), TextColumn("{task.completed:,} items"),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err_console) as bar:  # fmt: skip
        task = bar.add_task("scan", total=None, rate="")

        def progress(new: int, total: int) -> None:
            seconds = time.perf_counter() - started
            bar.update(task, completed=total, rate=f"{new / max(seconds, 1e-9):,.0f} items/s")

        return scan(loaded, source, out, share=share, progress=progress, **options)


@app.command()
def moderate(
    run: Annotated[str, typer.Argument(help="moderate run directory")],
    source: Annotated[str, typer.Argument(help="image folder, table (.csv/.tsv/.jsonl/.parquet), '-' for JSON lines "
                                               "on stdin, or a built-in split such as marketplace:test")],
    out: Annotated[Path, typer.Option(help="decisions file (JSON lines); re-running continues it")] = Path(
        "decisions.jsonl"),
    batch_size: Annotated[int, typer.Option(min=1, help="items per micro-batch")] = 256,
    limit: Annotated[int | None, typer.Option(min=1, help="scan only the first N items")] = None,
    overwrite: Annotated[bool, typer.Option(help="start the output again instead of continuing it")] = False,
    attribute: Annotated[bool, typer.Option(help="name the modality behind each score (3 passes per item)")] = False,
    allow_outside_root: Annotated[bool, typer.Option(help="let a table's image paths leave its folder")] = False,
    image_column: Annotated[str | None, typer.Option(help="a table's image column (default: the run's, else "
                                                          "'image')")] = None,
    text_column: Annotated[str | None, typer.Option(help="a table's text column (default: the run's, else "
                                                         "'text')")] = None,
    report: Annotated[bool, typer.Option(help="write <out>.report/ (counts, histograms, grids, worst errors)")] = True,
    nproc: Annotated[int, typer.Option(min=1, help="processes sharing the items (torchrun); one output")] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Scan every item of SOURCE: calibrated label scores and allow / review / block decisions, one JSON line each.
    Interrupted (even killed), the same command continues where it stopped; every item is in the output once."""
    from vlfuse.moderate.scan_report import write_scan_report
    from vlfuse.parallel import job_share
    from vlfuse.task import load_run_for
    from vlfuse.train.distributed import launch, relaunch_argv

    setup_logging(verbose)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if source == "-":
            raise typer.BadParameter("items on stdin cannot be shared between processes", param_hint="--nproc")
        raise typer.Exit(launch(nproc, relaunch_argv(sys.argv[1:])))  # the same command, in nproc processes
    loaded = load_run_for(run, "moderate")
    share = job_share()
    try:
        result = _scan_with_progress(loaded, source, out, share, batch_size=batch_size, limit=limit,
                                     overwrite=overwrite, attribute=attribute, allow_outside_root=allow_outside_root,
                                     image_column=image_column, text_column=text_column)  # fmt: skip
    finally:
        share.close()
    if result is None:  # another process's share: the first one merges and reports
        return
    if result["resumed_from"]:
        console.print(f"continued an earlier scan: {result['resumed_from']:,} items were already in {out}")
    console.print(f"{result['new']:,} items scanned in {result['seconds']:.1f} s ({result['items_per_s'] or 0:,.0f} "
                  f"items/s); {out} holds {result['items']:,}")  # fmt: skip
    if report:
        folder = write_scan_report(out, loaded.scores, _image_of(loaded, source))
        summary = json.loads((folder / "summary.json").read_text())
        console.print("decisions: " + ", ".join(f"{k} {v:,}" for k, v in summary["decisions"].items())
                      + f"; report: {folder / 'report.md'}")  # fmt: skip


@app.command()
def retune(
    run: Annotated[str, typer.Argument(help="moderate run directory")],
    policy: Annotated[Path | None, typer.Option(help="a new policy file (YAML)")] = None,
    calibration: Annotated[str | None, typer.Option(help="temperature, isotonic or none")] = None,
) -> None:
    """Choose a moderate run's calibration, thresholds and review bands again on its validation split — for a new
    policy or calibration method, without retraining — and show what they achieve on test."""
    from vlfuse.moderate.task import refit_policy

    moderation = refit_policy(run, policy=str(policy) if policy else None, calibration=calibration)
    for name, rule in moderation["rules"].items():
        test = moderation["measures"]["test"][name]
        fpr, recall = test["at_threshold"]["fpr"]["value"], test["at_threshold"]["recall"]["value"]
        met = "" if rule["met_on_val"] else f"  (target NOT met on val: {rule['achieved_on_val']:.4f})"
        review = test["three_way"]["review_rate"]["value"]
        console.print(f"{name}: threshold {rule['threshold']:.4f}, test FPR {100 * fpr:.2f} %, recall "
                      f"{100 * (recall or 0):.2f} %, review rate {100 * review:.2f} %{met}")  # fmt: skip
    console.print(f"written: {Path(run) / 'moderation.json'}, {Path(run) / 'report.md'}")
