"""Training a classifier from packed WebDataset shards (`data.shards`): the classify task with streamed data.

Nothing is read into memory: the index gives labels, tokenizer and counts; training batches stream through
`ShardLoader` (decoding and augmentation in worker processes); validation and test stream from their own shards.
The run directory is the same as an in-memory run's (labels.json, tokenizer.json, …), so `predict`, `serve` and
`export` work on it unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from vlfuse.classify.evaluate import evaluate_shards
from vlfuse.classify.run import build_classifier
from vlfuse.classify.task import ClassifyTask, pretrained_tokenizer_for
from vlfuse.data.shards import SampleDecoder, ShardIndex, ShardLoader
from vlfuse.data.splits import DataIssue
from vlfuse.data.text import TextTokenizer
from vlfuse.objective import Objective

log = logging.getLogger(__name__)


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


class ShardedClassifyTask(ClassifyTask):
    def prepare(self) -> None:
        cfg = self.cfg
        self.index, self.data = open_sharded(cfg.data.shards, pretrained_tokenizer_for(cfg), cfg.data.max_text_length,
                                             cfg.data.stream.url)
        self.objective = Objective(self.data.objective, len(self.data.label_names), cfg.train.label_smoothing)
        log.info("streaming %s: %d train rows in %d shard(s)", self.index.root, self.index.rows("train"),
                 len(self.index.shards("train")))  # fmt: skip

    def build(self) -> nn.Module:
        model = build_classifier(self.cfg, self.data.tokenizer, self.objective.num_outputs).to(self.ctx.device)
        if getattr(getattr(model, "image_encoder", None), "frozen", False):
            log.info("streaming from shards: the frozen image tower runs on every batch (features are cached only "
                     "for in-memory data)")  # fmt: skip
        return model

    def _decoder(self, *, augment: bool) -> SampleDecoder:
        tokenizer = self.data.tokenizer
        return SampleDecoder(self.cfg.data, tokenizer, self.data.label_names, self.data.objective, augment=augment,
                             stored_ids_length=self.index.stored_ids_length(tokenizer))  # fmt: skip

    def train_loader(self) -> ShardLoader:
        cfg, dist = self.cfg, self.ctx.dist
        return ShardLoader(self.index, cfg.data, self._decoder(augment=True), batch_size=cfg.train.batch_size,
                           seed=cfg.seed, rank=dist.rank, world_size=dist.world_size)  # fmt: skip

    def scored_splits(self) -> list[str]:
        return [name for name in ("val", "test") if self.index.has(name)]

    def score(self, model: nn.Module, name: str) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        return evaluate_shards(model, self.index, name, self._decoder(augment=False), self.objective,
                               batch_size=self.cfg.train.eval_batch_size, on_error=self.cfg.data.on_error,
                               device=self.ctx.device)  # fmt: skip

    def train_rows(self) -> int:
        return self.index.rows("train")
