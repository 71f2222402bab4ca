"""Batches straight from in-memory tensors: one index gather per batch, no per-sample Python work.

Shuffling uses a generator seeded by (seed, epoch), so the order of any epoch is the same whether a run was
resumed or not. Under DistributedDataParallel each rank takes an interleaved, equal-sized share of every epoch
(the last rows are repeated to make the split even, as torch's DistributedSampler does).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from vlfuse.data.dataset import SplitData
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.types import Batch


class BatchLoader:
    def __init__(
        self,
        split: SplitData,
        preprocess: ImagePreprocessor,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.split = split
        self.preprocess = preprocess
        self.batch_size = max(1, batch_size // world_size)  # per-rank share of the global batch
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.rows_per_rank = math.ceil(len(split) / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return max(1, self.rows_per_rank // self.batch_size)
        return math.ceil(self.rows_per_rank / self.batch_size)

    def _rows(self) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=gen)  # (N,)
        else:
            order = torch.arange(n)  # (N,)
        total = self.rows_per_rank * self.world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])  # (total,) pad so every rank gets the same count
        return order[self.rank :: self.world_size]  # (rows_per_rank,)

    def __iter__(self) -> Iterator[Batch]:
        rows = self._rows()
        for b in range(len(self)):
            batch_rows = rows[b * self.batch_size : (b + 1) * self.batch_size]  # (B,)
            yield self.make_batch(batch_rows)

    def make_batch(self, rows: torch.Tensor) -> Batch:
        split = self.split
        image = None
        if split.images is not None:
            image = self.preprocess(split.images[split.image_index[rows]])  # (B, C, H, W)
        text_ids = text_mask = None
        if split.token_ids is not None:
            mask = split.token_mask[rows]  # (B, L)
            length = max(1, int(mask.sum(1).max()))  # trim padding shared by the whole batch
            text_ids = split.token_ids[rows, :length]  # (B, L')
            text_mask = mask[:, :length]  # (B, L')
        label = split.labels[rows] if split.labels is not None else None
        return Batch(image=image, text_ids=text_ids, text_mask=text_mask, label=label, index=rows)
