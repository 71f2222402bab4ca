"""Captioned images → the train / val / test sets of a retrieval experiment.

Training rows are (image, caption) pairs — every caption of every image — as a `SplitData` whose `labels` are key
ids, so the standard `BatchLoader` batches them and the loss knows which rows match (`loss.positive_mask`).
Evaluation pairs each image with one of its captions (cycling through the templates) and counts a retrieved item
as a hit when its key matches the query's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from vlfuse.data.captions import CaptionedImages, captioned_images, captioned_table
from vlfuse.data.sources import table_path
from vlfuse.data.splits import DataIssue, SplitData, split_by_group
from vlfuse.data.text import TextTokenizer
from vlfuse.errors import ConfigError, DataError
from vlfuse.retrieval.config import RetrievalConfig

log = logging.getLogger(__name__)


@dataclass
class RetrievalData:
    train: CaptionedImages
    val: CaptionedImages
    test: CaptionedImages | None
    tokenizer: TextTokenizer
    keys: list[str]  # every key of train / val / test, sorted; ids index this list
    heldout: list[str]  # keys kept out of training and validation
    issues: list[DataIssue]

    def key_ids(self, images: CaptionedImages) -> torch.Tensor:
        """(M,) long key id of each image."""
        slot = {k: i for i, k in enumerate(self.keys)}
        return torch.tensor([slot[k] for k in images.keys], dtype=torch.long)


def load_captioned(cfg: RetrievalConfig, split: str) -> CaptionedImages | None:
    """The "train" or "test" captioned images named by the config (None: a table without test_path)."""
    data = cfg.data
    if data.name == "table":
        path = table_path(data, split, "a table with image and caption")
        if path is None:
            return None
        images = captioned_table(path, data, caption_column=cfg.captions.caption_column, image_column=data.image_column)
    else:
        images = captioned_images(
            data.name, split, data, templates=cfg.captions.templates,
            captions_per_image=cfg.captions.captions_per_image, seed=data.split_seed,
        )  # fmt: skip
    limit = data.limit if split == "train" else data.test_limit
    if limit is not None and limit < len(images):
        rng = np.random.default_rng([data.split_seed, 7])
        images = images.select(np.sort(rng.choice(len(images), limit, replace=False)))
        log.info("%s: using %d images (limit)", images.file, limit)
    return images


def prepare_retrieval_data(cfg: RetrievalConfig, *, tokenizer: TextTokenizer | None = None) -> RetrievalData:
    """Load captions, drop held-out keys from training, carve validation by image, train the tokenizer.

    Raises:
        ConfigError: a held-out key that the training data does not have.
        DataError: unreadable data, or too few images to split.
    """
    train = load_captioned(cfg, "train")
    test = load_captioned(cfg, "test")
    heldout = list(dict.fromkeys(cfg.captions.holdout))
    known = sorted(set(train.keys))
    unknown = [k for k in heldout if k not in known]
    if unknown:
        raise ConfigError(
            f"captions.holdout: {', '.join(map(repr, unknown))} not among the training keys; known: {', '.join(known)}"
        )
    if heldout:
        train = train.select([i for i, k in enumerate(train.keys) if k not in heldout])
    if len(train) < 2:
        raise DataError(f"{train.file}: only {len(train)} captioned image(s) for training; expected at least 2")
    keep, held = split_by_group(np.arange(len(train)), cfg.data.val_fraction, cfg.data.split_seed, train.file)
    val, train = train.select(held), train.select(keep)
    if tokenizer is None:
        tokenizer = TextTokenizer.train(
            (c for caps in train.captions for c in caps), kind=cfg.data.tokenizer, vocab_size=cfg.data.vocab_size,
            min_frequency=cfg.data.min_frequency, lowercase=cfg.data.lowercase,
            strip_punctuation=cfg.data.strip_punctuation, max_length=cfg.data.max_text_length,
        )  # fmt: skip
    keys = sorted(set(train.keys) | set(val.keys) | set(test.keys if test is not None else []) | set(heldout))
    issues = [*train.issues, *(test.issues if test is not None else [])]
    log.info("retrieval data %s: %d train / %d val / %s test images, %d keys (%d held out)", cfg.data.name,
             len(train), len(val), "no" if test is None else len(test), len(keys), len(heldout))  # fmt: skip
    return RetrievalData(train, val, test, tokenizer, keys, heldout, issues)


def caption_rows(images: CaptionedImages, key_ids: torch.Tensor, tokenizer: TextTokenizer) -> SplitData:
    """Every (image, caption) pair as one row; `labels` are the rows' key ids (N,)."""
    image_rows = [i for i, caps in enumerate(images.captions) for _ in caps]
    texts = [c for caps in images.captions for c in caps]
    ids, mask = tokenizer.encode([[t] for t in texts])  # (N, L), (N, L)
    image_index = torch.tensor(image_rows, dtype=torch.long)  # (N,)
    return SplitData(
        images=images.images, image_index=image_index, token_ids=ids, token_mask=mask,
        labels=key_ids[image_index], texts=texts, image_sources=list(images.image_sources),
        source_rows=list(range(len(texts))),
    )  # fmt: skip


def eval_captions(images: CaptionedImages) -> list[str]:
    """One caption per image for evaluation, cycling through each image's captions so every template is used."""
    return [caps[i % len(caps)] for i, caps in enumerate(images.captions)]
