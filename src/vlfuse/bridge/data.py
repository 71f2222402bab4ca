"""Data for the bridge: images with caption rows (describe the image) and question rows (answer about it).

- easy-VQA: every question with its answer; captions from the colour and shape that the questions and answers give
  (`vlfuse.data.captions`), for the images where both are known.
- Fashion-MNIST: captions from the class names (varied templates).
- A table (CSV / JSONL / Parquet) with an image column and a caption column.

Rows point at a split's unique images by index, so features are computed (and cached) once per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vlfuse.bridge.model import IGNORE, BridgeBatch, BridgeModel
from vlfuse.config import DataConfig
from vlfuse.data.builtin.easy_vqa import easy_vqa_caption, image_attributes_easy_vqa
from vlfuse.data.captions import caption_templates, captioned_images, captioned_table
from vlfuse.data.sources import table_path
from vlfuse.data.splits import sample_rows, split_by_group
from vlfuse.errors import DataError


@dataclass
class BridgeRows:
    """Prompt → target rows over a split's images.

    Attributes:
        image_index: (R,) long, row → image.
        prompts: per row, the text after the visual tokens (a question, or the caption instruction).
        targets: per row, the text the LM should write (an answer, a caption).
    """

    image_index: Tensor
    prompts: list[str]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def __add__(self, other: BridgeRows) -> BridgeRows:
        return BridgeRows(torch.cat([self.image_index, other.image_index]), self.prompts + other.prompts,
                          self.targets + other.targets)  # fmt: skip

    def one_per_image(self) -> BridgeRows:
        """The first row of each image (in order): one caption to generate per image."""
        _, first = np.unique(self.image_index.numpy(), return_index=True)
        return self.select(np.sort(first))

    def select(self, rows: np.ndarray | list[int]) -> BridgeRows:
        rows = [int(r) for r in rows]
        return BridgeRows(self.image_index[rows], [self.prompts[r] for r in rows], [self.targets[r] for r in rows])


@dataclass
class BridgeSplit:
    """One split: its unique images, caption rows, question rows, and what is known about each image."""

    name: str
    images: Tensor  # (M, C, H, W) uint8
    image_sources: list[str]
    captions: BridgeRows
    questions: BridgeRows
    attributes: list[dict[str, str]] = field(default_factory=list)  # per image; {} where unknown

    def rows(self, task: str) -> BridgeRows:
        """The rows of one task: "caption", "vqa", or "mixed" (both, so stage 2 keeps the captioning of stage 1)."""
        if task == "mixed":
            return self.questions + self.captions
        return self.captions if task == "caption" else self.questions

    def split_by_image(self, fraction: float, seed: int) -> tuple[BridgeSplit, BridgeSplit]:
        """(rest, held out): about `fraction` of the images, with all their rows, held out (for validation)."""
        keep, held = split_by_group(np.arange(len(self.images)), fraction, seed, self.name)
        return self._subset(keep.tolist()), self._subset(held.tolist())

    def limited(self, images: int | None, seed: int) -> BridgeSplit:
        """At most `images` images (a seeded sample, in their order), with all their rows; None: all."""
        if images is None or images >= len(self.images):
            return self
        return self._subset(sample_rows(len(self.images), images, seed).tolist())

    def _subset(self, keep: list[int]) -> BridgeSplit:
        remap = torch.full((len(self.images),), -1, dtype=torch.long)
        remap[keep] = torch.arange(len(keep))

        def rows(r: BridgeRows) -> BridgeRows:
            chosen = np.flatnonzero((remap[r.image_index] >= 0).numpy())
            sub = r.select(chosen)
            sub.image_index = remap[sub.image_index]
            return sub

        return BridgeSplit(
            self.name, self.images[keep], [self.image_sources[i] for i in keep], rows(self.captions),
            rows(self.questions), [self.attributes[i] for i in keep] if self.attributes else [],
        )  # fmt: skip


def load_bridge_split(cfg: DataConfig, split: str, caption_prompt: str, *, n_templates: int = 3) -> BridgeSplit:
    """Caption and question rows of a built-in split, or of a caption table (`data.name: table`).

    Args:
        cfg: data section: a built-in name, or "table" with `path` / `test_path` and `options.caption_column`
            (default "caption"); image size, channels.
        split: "train" or "test".
        caption_prompt: the instruction that asks for a caption.
        n_templates: easy-VQA: how many caption phrasings per image (the first is the canonical "a red circle").

    `data.limit` / `data.test_limit` keep a seeded sample of that many images (with all their rows).
    """
    limit = cfg.limit if split == "train" else cfg.test_limit  # counted in images (each with all its rows)
    if cfg.name == "easy-vqa":
        from vlfuse.data.builtin import easy_vqa

        raw = easy_vqa.load(split, cfg)
        ids = [int(s.rsplit("/", 1)[1]) for s in raw.image_sources]
        known = image_attributes_easy_vqa(split)
        attributes = [dict(known.get(i, {})) for i in ids]  # {"color", "shape"} or {}
        templates = caption_templates("easy-vqa", "train")[:n_templates]  # the first is canonical: "a red circle"
        cap_rows, cap_targets = [], []
        for pos, attrs in enumerate(attributes):
            if attrs.get("color") and attrs.get("shape"):
                for template in templates:
                    cap_rows.append(pos)
                    cap_targets.append(easy_vqa_caption(attrs["color"], attrs["shape"], template))
        captions = BridgeRows(torch.tensor(cap_rows, dtype=torch.long), [caption_prompt] * len(cap_rows), cap_targets)
        questions = BridgeRows(raw.image_index, [t[0] for t in raw.texts], list(raw.labels))
        loaded = BridgeSplit(f"easy-vqa:{split}", raw.images, raw.image_sources, captions, questions, attributes)
        return loaded.limited(limit, cfg.split_seed)
    if cfg.name == "table":  # data.path (train) / data.test_path (test): an image column and a caption column
        path = table_path(cfg, split, "a table with an image column and a caption column")
        if path is None:
            raise DataError(f"data.test_path: a caption table is needed for the {split} split")
        caption_column = str(cfg.options.get("caption_column", "caption"))
        source = captioned_table(path, cfg, caption_column=caption_column, image_column=cfg.image_column)
    else:
        source = captioned_images(cfg.name, split, cfg)
    rows = [(i, c) for i, caps in enumerate(source.captions) for c in caps]
    captions = BridgeRows(
        torch.tensor([i for i, _ in rows], dtype=torch.long), [caption_prompt] * len(rows), [c for _, c in rows]
    )
    empty = BridgeRows(torch.zeros(0, dtype=torch.long), [], [])
    loaded = BridgeSplit(source.file, source.images, source.image_sources, captions, empty, source.attributes)
    return loaded.limited(limit, cfg.split_seed)


class BridgeLoader:
    """Batches of (visual tokens, prompt + target ids) for the bridge, shuffled per epoch.

    Args:
        rows: the rows to serve.
        visual: (M, N, D) cached visual tokens of the rows' images.
        model: the bridge (its tokenizer builds the ids; each distinct prompt / target is tokenized once).
        batch_size: rows per batch.
        shuffle: reshuffle every epoch (seeded by `seed` and the epoch, so resume is exact).
        rows_per_epoch: serve a fresh random subset of this many rows each epoch (None: all rows).
        seed: shuffling seed.
    """

    def __init__(
        self,
        rows: BridgeRows,
        visual: Tensor,
        model: BridgeModel,
        *,
        batch_size: int,
        shuffle: bool = True,
        rows_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if len(rows) == 0:
            raise DataError("the bridge has no rows to train or evaluate on for this stage (no captions/questions)")
        self.rows, self.visual, self.batch_size = rows, visual, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rows_per_epoch = min(rows_per_epoch or len(rows), len(rows))
        prompt_ids = {p: model.encode_prompt(p) for p in set(rows.prompts)}
        target_ids = {t: model.encode_target(t) for t in set(rows.targets)}
        self.prompt_ids = [prompt_ids[p] for p in rows.prompts]
        self.target_ids = [target_ids[t] for t in rows.targets]
        self.pad_id = model.pad_id

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.rows_per_epoch / self.batch_size)

    def __iter__(self):
        n = len(self.rows)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)[: self.rows_per_epoch]
        else:
            order = np.arange(self.rows_per_epoch)
        for start in range(0, len(order), self.batch_size):
            yield self.collate(order[start : start + self.batch_size])

    def collate(self, rows: np.ndarray) -> BridgeBatch:
        seqs = [self.prompt_ids[r] + self.target_ids[r] for r in rows]
        length = max(map(len, seqs))
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)  # (B, L)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)  # (B, L)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)  # (B, L)
        for b, r in enumerate(rows):
            p, t = self.prompt_ids[r], self.target_ids[r]
            ids[b, : len(p) + len(t)] = torch.tensor(p + t)
            labels[b, len(p) : len(p) + len(t)] = torch.tensor(t)
            mask[b, : len(p) + len(t)] = True
        return BridgeBatch(self.visual[self.rows.image_index[rows]], ids, mask, labels)  # visual (B, N, D)
