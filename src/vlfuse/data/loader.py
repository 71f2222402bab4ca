"""Batches straight from in-memory tensors: one index gather per batch, no per-sample Python work.

Rows that share an image (the ~10 questions of an easy-VQA image) carry that image once per batch: a batch holds
its unique images (U, C, H, W) plus `image_index` (B,) mapping rows to them, so the image tower runs U times, not
B times. With `group_by_image` the loader builds batches from whole image groups (shuffled images, all of each
image's rows), which makes U ≈ B / (rows per image) — a ~10× cut of image-tower work on easy-VQA.

Shuffling uses a generator seeded by (seed, epoch), so the order of any epoch is the same whether a run was
resumed or not. Under DistributedDataParallel each rank takes an interleaved, equal share of every epoch's
batches (the last ones are repeated to even it out, as torch's DistributedSampler does with rows).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from vlfuse.data.splits import SplitData
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
        group_by_image: bool = False,
    ) -> None:
        self.split = split
        self.preprocess = preprocess
        self.batch_size = max(1, batch_size // world_size)  # per-rank share of the global batch
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.group_by_image = group_by_image and split.images is not None
        self.epoch = 0
        self._skip = 0
        self._num_batches = len(self._epoch_batches())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._skip = 0

    def skip_batches(self, count: int) -> None:
        """Start this epoch after its first `count` batches (trained on before an interruption)."""
        self._skip = count

    def __len__(self) -> int:
        return self._num_batches

    def _order(self, n: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(n)  # (n,)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(n, generator=gen)  # (n,)

    def _epoch_batches(self) -> list[torch.Tensor]:
        """This rank's batches (row-index tensors) for the current epoch."""
        size = self.batch_size * self.world_size
        if self.group_by_image:
            batches = self._batches_of_whole_images(size)
        else:
            batches = list(torch.split(self._order(len(self.split)), size))  # shuffled rows, (≤size,) each
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < len(batches[0]):
            batches.pop()
        if self.world_size == 1:
            return batches
        # every global batch is cut into contiguous per-rank chunks, so with grouping a rank's rows share images
        return [_rank_chunk(b, self.rank, self.world_size) for b in batches]

    def _batches_of_whole_images(self, rows_per_batch: int) -> list[torch.Tensor]:
        """Batches of a fixed number of whole images (all rows of each), images in shuffled order.

        A fixed image count keeps the image tower's input shape constant from batch to batch, which matters on
        CPU: oneDNN builds a kernel per new shape.
        """
        image_index = self.split.image_index  # (N,)
        num_images = int(image_index.max()) + 1
        rows_per_image = torch.bincount(image_index, minlength=num_images)  # (M,)
        images_per_batch = max(1, round(rows_per_batch / float(rows_per_image[rows_per_image > 0].float().mean())))
        image_order = self._order(num_images)  # (M,)
        position = torch.empty_like(image_order)
        position[image_order] = torch.arange(num_images)  # (M,) where each image falls in the order
        tie_break = self._order(len(image_index)).argsort()  # (N,) random order within an image
        rows = (position[image_index] * len(image_index) + tie_break).argsort()  # (N,) rows, image by image
        batch_sizes = [int(c.sum()) for c in rows_per_image[image_order].split(images_per_batch)]
        return [b for b in torch.split(rows, batch_sizes) if len(b)]

    def __iter__(self) -> Iterator[Batch]:
        for rows in self._epoch_batches()[self._skip :]:
            yield self.make_batch(rows)

    def make_batch(self, rows: torch.Tensor) -> Batch:
        split = self.split
        image = image_index = image_tokens = image_pooled = None
        if split.images is not None:
            unique, image_index = torch.unique(split.image_index[rows], return_inverse=True)  # (U,), (B,)
            if split.image_features is not None:  # a frozen tower's cached features: no pixels, no augmentation
                image_tokens = split.image_features.tokens[unique]  # (U, N, D)
                image_pooled = split.image_features.pooled[unique]  # (U, D)
            else:
                image = self.preprocess(split.images[unique])  # (U, C, H, W)
        text_ids = text_mask = None
        if split.token_ids is not None:
            mask = split.token_mask[rows]  # (B, L)
            length = max(1, int(mask.sum(1).max()))  # trim padding shared by the whole batch
            text_ids = split.token_ids[rows, :length]  # (B, L')
            text_mask = mask[:, :length]  # (B, L')
        label = split.labels[rows] if split.labels is not None else None
        return Batch(image=image, text_ids=text_ids, text_mask=text_mask, label=label, index=rows,
                     image_index=image_index, image_tokens=image_tokens, image_pooled=image_pooled)  # fmt: skip


def _rank_chunk(rows: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank's contiguous share of a global batch; rows repeat when there are fewer rows than ranks."""
    if len(rows) < world_size:
        rows = rows.repeat(math.ceil(world_size / len(rows)))  # (≥ world_size,)
    return torch.tensor_split(rows, world_size)[rank]
