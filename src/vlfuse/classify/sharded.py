"""What a classifier trained from packed WebDataset shards (`data.shards`) knows of its data: the index's labels,
tokenizer and skipped rows — no rows (`ShardedClassifyTask` in `vlfuse.classify.task` streams them)."""

from __future__ import annotations

from dataclasses import dataclass

from vlfuse.data.shard_io import ShardIndex
from vlfuse.data.splits import DataIssue
from vlfuse.data.text import TextTokenizer


@dataclass
class ShardedData:
    """What the classify task reads of its data when it streams: no rows, only what describes them."""

    tokenizer: TextTokenizer | None
    label_names: list[str]
    objective: str
    issues: list[DataIssue]


def open_sharded(
    location: str, tokenizer: TextTokenizer | None, max_text_length: int, url: str | None = None
) -> tuple[ShardIndex, ShardedData]:
    """The index at `location` and the data description a classifier is built from (the packed tokenizer unless a
    pretrained text encoder brings its own)."""
    index = ShardIndex.open(location, url)
    tokenizer = tokenizer or index.tokenizer(max_text_length)
    issues = [DataIssue(**issue) for issue in index.raw.get("skipped_rows", [])]
    return index, ShardedData(tokenizer, index.label_names, index.objective, issues)
