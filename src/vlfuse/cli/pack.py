"""`vlfuse data pack`: a data set → WebDataset shards for streaming training (`data.shards`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlfuse.cli.app import console, setup_logging
from vlfuse.cli.runs import data_app

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def _data_config(source: str, set_: list[str]):
    """SOURCE as a data section: a config YAML's, a table file's (`data.name: table`) or a built-in set's."""
    from vlfuse.config import DataConfig, VideoDataConfig, apply_overrides
    from vlfuse.data.builtin import VIDEO_BUILTINS
    from vlfuse.task import load_config

    if source.endswith((".yaml", ".yml")):
        return load_config(source, set_ or None).data
    if source.lower().endswith(TABLE_SUFFIXES):
        raw = apply_overrides({"data": {"name": "table", "path": source}}, set_)
        return DataConfig.model_validate(raw["data"])
    raw = apply_overrides({"data": {"name": source}}, set_)
    return (VideoDataConfig if source in VIDEO_BUILTINS else DataConfig).model_validate(raw["data"])


@data_app.command("pack")
def data_pack(
    source: Annotated[str, typer.Argument(help="built-in dataset name, a table (CSV/JSONL/Parquet) or a config YAML")],
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
    result = pack(_data_config(source, set_ or []), out, shard_size=shard_size, repeat=repeat)
    for name, split in result.splits.items():
        shards = len(split["shards"])
        console.print(f"{name}: {split['rows']:,} rows in {split['samples']:,} samples, {shards} shard(s)")
    rate = result.rows / max(result.seconds, 1e-9)
    console.print(f"packed {result.rows:,} rows in {result.seconds:.1f} s ({rate:,.0f} rows/s) → {out}/index.json")
