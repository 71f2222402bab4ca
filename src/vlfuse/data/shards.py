"""Streaming packed data (`vlfuse data pack` output) for training and evaluation, with memory flat in data size.

Training: every (rank, DataLoader worker) pair — a *stream* — reads its own endless sequence of shards (drawn with
replacement by default, so no rank ever runs dry and every rank takes the same number of steps: the WebDataset
advice for equal epochs), mixes samples through a shuffle buffer, and yields a fixed number of batches per epoch.
Decoding, tokenizing and augmentation run in the worker processes.

Every random choice is seeded by (seed, epoch, stream, batch), so an epoch's batches are a pure function of those:
resuming mid-epoch (`skip_batches`) replays the streams without decoding and continues at the exact batch where the
checkpoint was taken — no sample repeated or skipped. Batch n of an epoch comes from worker n mod W (the DataLoader
takes them in turn, starting at worker 0), which is what lets the loader know how many batches each worker has
already delivered.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vlfuse.config import DataConfig
from vlfuse.data.images import decode_image_bytes
from vlfuse.data.labels import encode_labels
from vlfuse.data.pixels import refit_pixels
from vlfuse.data.shard_io import Shard, ShardIndex, npy_pixels, read_shard
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import DataError
from vlfuse.types import Batch

log = logging.getLogger(__name__)

IMAGE_KEYS = ("npy", "png", "jpg", "jpeg", "webp", "bmp", "gif")


class SampleDecoder:
    """Packed samples → one Batch: image decode, tokenizing, label encoding and (training) augmentation."""

    def __init__(self, cfg: DataConfig, tokenizer: TextTokenizer | None, label_names: list[str], objective: str,
                 *, augment: bool, stored_ids_length: int | None = None, preprocess=None) -> None:  # fmt: skip
        """`preprocess`: stored pixels → model input (a task's own, e.g. the video task's frame choice); default: the
        image preprocessing of `cfg`, augmented when `augment`."""
        self.cfg = cfg
        self.tokenizer = tokenizer
        # rows carry `tokenizer`'s ids, cut at this length (ShardIndex.stored_ids_length): no tokenizing again
        self.stored_ids_length = stored_ids_length
        self.label_names = label_names
        self.objective = objective
        self.preprocess = preprocess or ImagePreprocessor(cfg, augment=augment)

    def __call__(self, samples: list[dict[str, Any]], seed: int | None = None) -> Batch:
        return self._decode(samples, seed)[0]

    def with_texts(self, samples: list[dict[str, Any]]) -> tuple[Batch, list[str]]:
        """The batch and its rows' texts (columns joined by " | "), for scores that depend on the text."""
        batch, texts = self._decode(samples, None)
        return batch, [" | ".join(row) for row in texts]

    def _decode(self, samples: list[dict[str, Any]], seed: int | None) -> tuple[Batch, list[list[str]]]:
        images, texts, labels, rows, image_index, token_ids = [], [], [], [], [], []
        for position, sample in enumerate(samples):
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            where = f"{sample.get('__url__', '?')}, sample {sample.get('__key__', '?')}"
            if key is None or "json" not in sample:
                raise DataError(f"{where}: expected an image member (.png/.jpg …) and a .json record")
            record = json.loads(sample["json"])
            images.append(self._image(sample[key], key, where))  # (C, S, S) uint8
            for row in record["rows"]:
                texts.append(row["texts"])
                labels.append(row["label"])
                rows.append(row["row"])
                token_ids.append(row.get("ids"))
                image_index.append(position)
        pixels = torch.stack(images)  # (U, C, S, S) uint8; clips (U, F, C, S, S)
        if seed is None:
            image = self.preprocess(pixels)  # (U, C, S, S)
        else:  # a seeded draw of its own: the batch's augmentation does not depend on what ran before it
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)  # the CPU generator only (torch.manual_seed: +0.7 ms)
                image = self.preprocess(pixels)  # (U, C, S, S)
        text_ids = text_mask = None
        if self.tokenizer is not None and texts and texts[0]:
            if self._stored_ids_hold(token_ids):
                text_ids, text_mask = self._pad(token_ids)  # (B, L'), (B, L')
            else:
                ids, mask = self.tokenizer.encode(texts)  # (B, L), (B, L)
                length = max(1, int(mask.sum(1).max()))  # trim the padding the whole batch shares
                text_ids, text_mask = ids[:, :length], mask[:, :length]  # (B, L'), (B, L')
        label = None if labels[0] is None else encode_labels(labels, self.label_names, self.objective,
                                                             source=samples[0].get("__url__", "shards"))  # fmt: skip
        batch = Batch(image=image, text_ids=text_ids, text_mask=text_mask, label=label, index=torch.tensor(rows),
                      image_index=torch.tensor(image_index))  # fmt: skip
        return batch, texts

    def _image(self, data: bytes, key: str, where: str) -> torch.Tensor:
        size, channels, fit = self.cfg.image_size, self.cfg.channels, self.cfg.fit
        if key != "npy":
            return decode_image_bytes(data, size=size, channels=channels, source=where, fit=fit)
        array = npy_pixels(data, where)  # (C, H, W) or a clip's (F, C, H, W)
        if array.ndim == 4:
            return torch.from_numpy(np.stack([refit_pixels(frame, size, channels, fit) for frame in array]))
        return torch.from_numpy(refit_pixels(array, size, channels, fit))

    def _stored_ids_hold(self, token_ids: list[list[int] | None]) -> bool:
        """Whether every row's stored ids are what tokenizing now gives: not cut at packing (or cut at today's
        length) and within today's max_length."""
        packed, now = self.stored_ids_length, self.tokenizer.max_length
        if packed is None:
            return False
        return all(ids is not None and len(ids) <= now and (len(ids) < packed or packed == now) for ids in token_ids)

    def _pad(self, token_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored token ids → ids (B, L') padded to the batch's longest row, and mask (B, L')."""
        length = max(1, max(len(ids) for ids in token_ids))
        pad = self.tokenizer.pad_id
        ids = torch.tensor([row + [pad] * (length - len(row)) for row in token_ids])  # (B, L')
        return ids, ids != pad


@dataclass
class WireBatch:
    """A Batch as two tensors (floats, integers) plus their layout: what a worker sends to the training process.
    Every tensor crossing the process boundary costs ~0.2 ms of the training process's time (a shared-memory file
    and a descriptor each), whatever its size; a Batch has six."""

    floats: torch.Tensor
    ints: torch.Tensor
    layout: list[tuple[str, tuple[int, ...], torch.dtype]]

    @classmethod
    def of(cls, batch: Batch) -> WireBatch:
        floats, ints, layout = [], [], []
        for name in ("image", "label", "text_ids", "text_mask", "index", "image_index"):
            value = getattr(batch, name)
            if value is None:
                continue
            (floats if value.is_floating_point() else ints).append(value.reshape(-1))
            layout.append((name, tuple(value.shape), value.dtype))
        ints_flat = torch.cat([t.long() for t in ints]) if ints else torch.empty(0, dtype=torch.long)
        return cls(torch.cat(floats) if floats else torch.empty(0), ints_flat, layout)

    def batch(self) -> Batch:
        fields, offsets = {}, {True: 0, False: 0}
        for name, shape, dtype in self.layout:
            floating = dtype.is_floating_point
            source, start = (self.floats if floating else self.ints), offsets[floating]
            count = math.prod(shape)
            fields[name] = source[start : start + count].view(shape).to(dtype)
            offsets[floating] = start + count
        return Batch(**{"image": None, "text_ids": None, "text_mask": None, **fields})


def _seed_of(*parts: int) -> int:
    return int.from_bytes(random.Random("-".join(map(str, parts))).randbytes(7), "little")


class TrainStream(IterableDataset):
    """One epoch of one rank's training batches, split over the DataLoader's workers (see the module docstring)."""

    def __init__(
        self, urls: list[Shard], decode: SampleDecoder, *, samples_per_batch: int, batches: int, seed: int, rank: int,
        world_size: int, workers: int, shuffle_buffer: int, resample: bool, on_error: str,
    ) -> None:  # fmt: skip
        super().__init__()
        self.urls, self.decode = urls, decode
        self.samples_per_batch, self.batches = samples_per_batch, batches
        self.seed, self.rank, self.world_size, self.workers = seed, rank, world_size, max(1, workers)
        self.shuffle_buffer, self.resample, self.on_error = shuffle_buffer, resample, on_error
        self.epoch = 0
        self.skip = 0  # batches of this epoch already trained on (a resumed run)

    def _shard_order(self, rng: random.Random, stream: int) -> Iterator[Shard]:
        if self.resample:
            while True:
                yield rng.choice(self.urls)
        mine = self.urls[stream :: self.world_size * self.workers]
        while True:
            order = list(mine)
            rng.shuffle(order)
            yield from order

    def _samples(self, rng: random.Random, stream: int) -> Iterator[dict[str, Any]]:
        """Endless shuffled samples of this stream; a whole pass over the shards with nothing readable is an error."""
        buffer: list[dict[str, Any]] = []
        empty_run = 0
        for shard in self._shard_order(rng, stream):
            read = 0
            for sample in read_shard(shard, self.on_error):
                read += 1
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(sample)
                    continue
                pick = rng.randrange(len(buffer))
                buffer[pick], sample = sample, buffer[pick]
                yield sample
            empty_run = 0 if read else empty_run + 1
            if empty_run >= max(len(self.urls), 1) * 4:
                raise DataError(f"no readable sample in {empty_run} shard reads of {self.urls[0].url} …; "
                                "every shard of this stream is empty or corrupt")  # fmt: skip

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        stream = self.rank * self.workers + worker
        rng = random.Random(_seed_of(self.seed, self.epoch, stream))
        samples = self._samples(rng, stream)
        mine = self.batches // self.workers  # batches is a multiple of workers
        skip = self.skip // self.workers  # whole rounds; ShardLoader drops the rest (the DataLoader starts at worker 0)
        for number in range(mine):
            group = list(itertools.islice(samples, self.samples_per_batch))
            if number >= skip:
                batch = self.decode(group, seed=_seed_of(self.seed, self.epoch, stream, number))
                yield WireBatch.of(batch) if info is not None else batch


def loader_workers(setting: int | str, world_size: int) -> int:
    """`data.stream.workers` for one of `world_size` ranks on this machine: a number as given; "auto" → the rank's
    cores less two for its training threads, at most 8. The training threads wait for one another at every parallel
    op, so a worker taking one of their cores stalls them all: on 2 cores an epoch from shards took 1.48× the
    in-memory time with 2 workers and 1.17× with none (benchmarks/results/shards.json)."""
    if setting != "auto":
        return int(setting)
    from vlfuse.threads import available_cores

    return max(0, min(8, available_cores() // max(1, world_size) - 2))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode; the training process owns the cores' math


class ShardLoader:
    """The training loader over shards: `len()` batches per epoch, `set_epoch`, `skip_batches` (mid-epoch resume)."""

    def __init__(self, index: ShardIndex, cfg: DataConfig, decode: SampleDecoder, *, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:  # fmt: skip
        stream = cfg.stream
        urls = index.shards("train")
        workers = loader_workers(stream.workers, world_size)
        streams = world_size * max(1, workers)
        if not urls:
            raise DataError(f"{index.root}: no training shards")
        if not stream.resample and len(urls) < streams:
            raise DataError(
                f"{len(urls)} training shard(s) for {streams} streams ({world_size} rank(s) × {max(1, workers)} "
                f"worker(s)) with data.stream.resample: false — a stream without shards would hang the job; pack "
                f"smaller shards (--shard-size), use fewer workers or ranks, or set data.stream.resample: true"
            )  # fmt: skip
        rows_per_sample = index.rows_per_sample("train")
        samples_per_batch = max(1, round(batch_size / world_size / rows_per_sample))
        rows_per_epoch = stream.samples_per_epoch or index.rows("train")
        batches = math.ceil(rows_per_epoch / world_size / (samples_per_batch * rows_per_sample))
        batches = max(1, workers) * math.ceil(batches / max(1, workers))  # every worker delivers the same number
        self.workers = workers
        log.info("shard loader: %d worker process(es) per rank", workers)
        self.dataset = TrainStream(
            urls, decode, samples_per_batch=samples_per_batch, batches=batches, seed=seed, rank=rank,
            world_size=world_size, workers=workers, shuffle_buffer=stream.shuffle_buffer,
            resample=stream.resample, on_error=cfg.on_error,
        )  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch
        self.dataset.skip = 0

    def skip_batches(self, count: int) -> None:
        """Start this epoch after its first `count` batches (they were trained on before an interruption)."""
        self.dataset.skip = count

    def __len__(self) -> int:
        return self.dataset.batches

    def __iter__(self) -> Iterator[Batch]:
        # a generator of its own: starting workers must not draw from torch's global one, which the checkpoint holds
        # (dropout reads it), or a resumed epoch would see other random numbers than an uninterrupted one
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.workers, worker_init_fn=_worker_init,
                            prefetch_factor=4 if self.workers else None, generator=torch.Generator())  # fmt: skip
        batches = iter(loader)
        # the workers skipped whole rounds of batches undecoded; the DataLoader takes worker 0's batch first, so the
        # trained batches of a part-done round are dropped here (fewer than one per worker is decoded in vain)
        for _ in range(self.dataset.skip % self.dataset.workers):
            next(batches)
        return (item.batch() if isinstance(item, WireBatch) else item for item in batches)


def split_batches(index: ShardIndex, split: str, decode: SampleDecoder, *, samples_per_batch: int, on_error: str,
                  shards: list[Shard] | None = None) -> Iterable[Batch]:  # fmt: skip
    """Every sample of a split (or of some of its `shards`) once, in shard order, as batches (evaluation)."""
    for batch, _ in split_batches_with_texts(index, split, decode, samples_per_batch=samples_per_batch,
                                             on_error=on_error, shards=shards):  # fmt: skip
        yield batch


def split_batches_with_texts(
    index: ShardIndex, split: str, decode: SampleDecoder, *, samples_per_batch: int, on_error: str,
    shards: list[Shard] | None = None,
) -> Iterable[tuple[Batch, list[str]]]:  # fmt: skip
    """`split_batches`, each batch with its rows' texts."""
    group: list[dict[str, Any]] = []
    for shard in index.shards(split) if shards is None else shards:
        for sample in read_shard(shard, on_error):
            group.append(sample)
            if len(group) == samples_per_batch:
                yield decode.with_texts(group)
                group = []
    if group:
        yield decode.with_texts(group)
