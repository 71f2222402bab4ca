"""Commands for data and work larger than one process: `vlfuse data pack` (a data set → WebDataset shards for
streaming training, `data.shards`) and `vlfuse evaluate --nproc` (a split scored by several processes)."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from vlfuse.cli.app import console, data_app, print_metrics, setup_logging

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def _data_config(source: str, set_: list[str], out: Path):
    """SOURCE as a data section: a config YAML's, a table file's (`data.name: table`), an image folder's (a table of
    its class subfolders, OUT/folder.csv) or a built-in set's."""
    from vlfuse.config import DataConfig, VideoDataConfig, apply_overrides
    from vlfuse.data.builtin import VIDEO_BUILTINS
    from vlfuse.data.pack import folder_table
    from vlfuse.task import load_config

    if Path(source).is_dir():
        table, has_text = folder_table(source, out)
        base = {"name": "table", "path": str(table), "root": str(Path(source).absolute()),
                "text_columns": ["text"] if has_text else []}  # fmt: skip
        return DataConfig.model_validate(apply_overrides({"data": base}, set_)["data"])
    if source.endswith((".yaml", ".yml")):
        return load_config(source, set_ or None).data
    if source.lower().endswith(TABLE_SUFFIXES):
        raw = apply_overrides({"data": {"name": "table", "path": source}}, set_)
        return DataConfig.model_validate(raw["data"])
    raw = apply_overrides({"data": {"name": source}}, set_)
    return (VideoDataConfig if source in VIDEO_BUILTINS else DataConfig).model_validate(raw["data"])


@data_app.command("pack")
def data_pack(
    source: Annotated[str, typer.Argument(help="built-in dataset name (video ones too), a table (CSV/JSONL/Parquet), "
                                        "an image folder (a subfolder per label) or a config YAML (a video table: "
                                        "its config)")],
    out: Annotated[Path, typer.Option(help="folder for the shards and index.json (new or empty)")],
    shard_size: Annotated[str, typer.Option(help="bytes per shard, e.g. 256MB, 1GB")] = "256MB",
    repeat: Annotated[int, typer.Option(min=1, help="copies of the training split (copies after the first are "
                                        "augmented with data.augment)")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a data key: --set data.limit=1000")] = None,
    verbose: bool = False,
) -> None:
    """Pack a data set into WebDataset tar shards (one sample = an image with its rows) plus index.json; train from them
    with `--set data.shards=DIR`."""
    from vlfuse.data.pack import pack

    setup_logging(verbose)
    result = pack(_data_config(source, set_ or [], out), out, shard_size=shard_size, repeat=repeat)
    for name, split in result.splits.items():
        shards = len(split["shards"])
        console.print(f"{name}: {split['rows']:,} rows in {split['samples']:,} samples, {shards} shard(s)")
    rate = result.rows / max(result.seconds, 1e-9)
    console.print(f"packed {result.rows:,} rows in {result.seconds:.1f} s ({rate:,.0f} rows/s) → {out}/index.json")


def evaluate_in_processes(ref, run: str, split: str, nproc: int, json_: bool, other_options: bool) -> None:
    """`vlfuse evaluate --nproc P`: re-run under torchrun; each process scores its share, the first prints."""
    from vlfuse.parallel import job_share
    from vlfuse.task import load_run
    from vlfuse.train.distributed import launch

    if other_options:
        raise typer.BadParameter("--nproc splits the plain evaluation of a split", param_hint="--nproc")
    if "WORLD_SIZE" not in os.environ:
        raise typer.Exit(launch(nproc, ["evaluate", run, "--split", split, *(["--json"] if json_ else [])]))
    loaded = load_run(ref)
    if "share" not in inspect.signature(loaded.evaluate).parameters:
        raise typer.BadParameter(f"'{run}' is a '{ref.task.name}' run, whose evaluation runs in one process",
                                 param_hint="--nproc")  # fmt: skip
    share = job_share()
    try:
        metrics = loaded.evaluate(split, share=share)
    finally:
        share.close()
    if not share.is_main:
        return
    metrics["processes"] = share.world
    if json_:
        console.print_json(json.dumps(metrics))
    else:
        print_metrics({split: metrics})
