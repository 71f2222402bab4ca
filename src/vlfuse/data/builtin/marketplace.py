"""Marketplace listings for moderation: a product photo (a Fashion-MNIST garment) + a listing title, three labels.

Labels (multilabel; a clean listing has none):
- `mismatch`: the title names another kind of item than the photo shows (needs both modalities). The four tops
  (t-shirt/top, pullover, coat, shirt) count as one kind: Fashion-MNIST's own photos of them are confused even by
  people (its paper reports ~84 % human accuracy), and "a top" names all four;
- `prohibited`: the title's brand claim contradicts the photo — "authentic/genuine/official …" on a photo without a
  brand mark (a fake "authentic" listing), or "replica/dupe/inspired …" on a photo that carries a brand mark (a
  counterfeit); a mark alone or a claim alone is fine (needs both modalities);
- `abusive`: the title insults buyers (text alone decides; some harmless titles use nearby words).

The brand mark is a small high-contrast ring stamped into one corner of the garment photo.

Generation (deterministic in `data.split_seed`): one *seed listing* per garment image, with independent draws —
named item = the photo's class except with probability `mismatch_rate` (then an item of another kind, drawn from a
doubly stochastic matrix so that every item is named equally often among mismatches and among matches);
brand mark with probability 1/2; brand claim consistent with the mark except with probability `prohibited_rate`;
an abusive phrase with probability `abusive_rate`. Then every seed that is positive for a multimodal label gets its
two *benign confounders* (Kiela et al. 2020, Hateful Memes), each differing in one modality only and flipping that
label: for `mismatch`, the same photo with a title naming its own item, and the same title with a photo of the named
item; for `prohibited`, the same title on the same garment with the mark flipped, and the same photo with the other
claim. Per photo class, per brand-mark state, per named item and per claim the positive rate of each multimodal
label is then the same, so an image-only or a text-only model sits at chance on them (AUROC ≈ 0.5).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.builtin import fashion_mnist
from vlfuse.data.builtin.fashion_mnist_pairs import SYNONYMS
from vlfuse.data.splits import RawSplit
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

NAME = "marketplace"
LABEL_NAMES = ["mismatch", "prohibited", "abusive"]
MULTIMODAL_LABELS = ("mismatch", "prohibited")
OPTIONS = {"mismatch_rate": 0.2, "prohibited_rate": 0.2, "abusive_rate": 0.1}

AUTHENTIC = ["authentic", "genuine", "original branded", "official", "certified authentic"]
REPLICA = ["replica", "dupe", "inspired", "unbranded copy of a designer", "mirror quality replica"]
TEMPLATES = [
    "{claim} {item}{extra}",
    "{claim} {item} for sale{extra}",
    "selling my {claim} {item}{extra}",
    "{item}, {claim}{extra}",
    "{claim} {item} - barely used{extra}",
    "brand new {claim} {item}{extra}",
]
ABUSIVE = [", no idiots", ", lowballers are morons", " - stupid buyers stay away", ", only losers haggle",
           ", dumb offers get blocked, you clowns"]  # fmt: skip
HARMLESS = ["", "", "", ", fast shipping", ", idiot-proof zipper", ", stupidly comfortable", ", smoke-free home",
            ", price is firm"]  # fmt: skip
TOPS = (0, 2, 4, 6)  # t-shirt/top, pullover, coat, shirt: one kind of item for `mismatch`
MARK = torch.tensor([  # 7×7 brand mark: a dark frame around a bright ring with a dark centre
    [0, 0, 0, 0, 0, 0, 0],
    [0, 255, 255, 255, 255, 255, 0],
    [0, 255, 0, 0, 0, 255, 0],
    [0, 255, 0, 255, 0, 255, 0],
    [0, 255, 0, 0, 0, 255, 0],
    [0, 255, 255, 255, 255, 255, 0],
    [0, 0, 0, 0, 0, 0, 0],
], dtype=torch.uint8)  # fmt: skip


def rates(cfg: DataConfig) -> dict[str, float]:
    out = {}
    for key, default in OPTIONS.items():
        value = cfg.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 0.5:
            raise DataError(f"data.options.{key} must be a number between 0 and 0.5 (exclusive), got {value!r}")
        out[key] = float(value)
    return out


def stamp_mark(images: Tensor, corners: np.ndarray) -> Tensor:
    """Copies of (N, C, S, S) uint8 garment images with the brand mark in corner 0..3 (TL, TR, BL, BR) of each."""
    out = images.clone()
    size = images.shape[-1]
    mark = MARK if size == 28 else torch.nn.functional.interpolate(
        MARK[None, None].float(), scale_factor=size / 28, mode="nearest")[0, 0].to(torch.uint8)  # fmt: skip
    k = mark.shape[0]
    margin = max(1, size // 28)
    for i, corner in enumerate(corners.tolist()):
        top = margin if corner < 2 else size - k - margin
        left = margin if corner % 2 == 0 else size - k - margin
        out[i, :, top : top + k, left : left + k] = mark
    return out


def kind_of(classes: np.ndarray) -> np.ndarray:
    """The kind of item of each class: tops share one kind, every other class is its own."""
    return np.where(np.isin(classes, TOPS), -1, classes)


def mismatch_matrix(iterations: int = 500) -> np.ndarray:
    """(10, 10) probabilities of naming item n for a photo of class c in a mismatch: zero within a kind, rows and
    columns each summing to one (Sinkhorn balancing), so the named item alone says nothing about a mismatch."""
    kinds = kind_of(np.arange(len(SYNONYMS)))
    q = (kinds[:, None] != kinds[None, :]).astype(np.float64)
    for _ in range(iterations):
        q /= q.sum(1, keepdims=True)
        q /= q.sum(0, keepdims=True)
    return q / q.sum(1, keepdims=True)


def _titles(named: np.ndarray, claim_replica: np.ndarray, extra: list[str], rng: np.random.Generator) -> list[str]:
    """One title per listing from its named class, claim kind and tail phrase."""
    n = len(named)
    synonym = rng.integers(0, 3, size=n)
    template = rng.integers(0, len(TEMPLATES), size=n)
    phrase = rng.integers(0, len(AUTHENTIC), size=n)
    titles = []
    for i in range(n):
        claims = REPLICA if claim_replica[i] else AUTHENTIC
        item = SYNONYMS[named[i]][synonym[i]][1]
        titles.append(TEMPLATES[template[i]].format(claim=claims[phrase[i]], item=item, extra=extra[i]))
    return titles


def make_listings(classes: np.ndarray, rng: np.random.Generator, opts: dict[str, float]) -> dict[str, np.ndarray]:
    """Seed listings and their confounders, as parallel arrays over rows.

    Args:
        classes: (M,) class id of each garment image.

    Returns:
        garment (R,) image position, marked (R,) bool, named (R,) class the title names, replica (R,) bool claim
        kind, abusive (R,) bool, extra (R,) tail phrase index (abusive or harmless list), kind (R,) 0 = seed,
        1 = mismatch confounder, 2 = prohibited confounder.
    """
    m = len(classes)
    by_class = [np.flatnonzero(classes == c) for c in range(len(SYNONYMS))]
    mismatch = rng.random(m) < opts["mismatch_rate"]
    cumulative = np.cumsum(mismatch_matrix(), axis=1)[classes]  # (M, 10)
    other = np.minimum((rng.random(m)[:, None] >= cumulative).sum(1), len(SYNONYMS) - 1)  # (M,) a draw from q[c]
    named = np.where(mismatch, other, classes)
    marked = rng.random(m) < 0.5
    prohibited = rng.random(m) < opts["prohibited_rate"]
    replica = np.where(prohibited, marked, ~marked)  # consistent: replica ⇔ no mark; prohibited: replica ⇔ mark
    abusive = rng.random(m) < opts["abusive_rate"]
    extra = np.where(abusive, rng.integers(0, len(ABUSIVE), size=m), rng.integers(0, len(HARMLESS), size=m))
    seed = dict(garment=np.arange(m), marked=marked, named=named, replica=replica, abusive=abusive, extra=extra,
                kind=np.zeros(m, dtype=np.int64))  # fmt: skip
    parts = [seed]
    pos = np.flatnonzero(mismatch)
    if len(pos):
        # same photo, a title naming its own item; same title, a photo of the named item (same mark state)
        own = {k: v[pos] for k, v in seed.items()} | {"named": classes[pos]}
        other_photo = np.array([rng.choice(by_class[c]) for c in named[pos].tolist()], dtype=np.int64)
        same_title = {k: v[pos] for k, v in seed.items()} | {"garment": other_photo}
        parts += [own, same_title]
        parts[-2]["kind"] = parts[-1]["kind"] = np.ones(len(pos), dtype=np.int64)
    pos = np.flatnonzero(prohibited)
    if len(pos):
        flip_mark = {k: v[pos] for k, v in seed.items()} | {"marked": ~marked[pos]}
        flip_claim = {k: v[pos] for k, v in seed.items()} | {"replica": ~replica[pos]}
        parts += [flip_mark, flip_claim]
        parts[-2]["kind"] = parts[-1]["kind"] = np.full(len(pos), 2, dtype=np.int64)
    return {k: np.concatenate([p[k] for p in parts]) for k in seed}


def row_labels(rows: dict[str, np.ndarray], classes: np.ndarray) -> list[list[str]]:
    """The label rules, applied to every row (not copied from the seed): the one source of truth."""
    mismatch = kind_of(rows["named"]) != kind_of(classes[rows["garment"]])
    prohibited = rows["replica"] == rows["marked"]
    flags = np.stack([mismatch, prohibited, rows["abusive"]], axis=1)  # (R, 3)
    return [[LABEL_NAMES[j] for j in np.flatnonzero(f)] for f in flags]


def load(split: str, cfg: DataConfig) -> RawSplit:
    """Listings built on one Fashion-MNIST split (text column "title"); deterministic in cfg.split_seed."""
    opts = rates(cfg)
    garments, classes = fashion_mnist.load_arrays(split, cfg)  # (M, C, S, S), (M,)
    rng = np.random.default_rng([cfg.split_seed, 7, 0 if split == "train" else 1])
    rows = make_listings(classes, rng, opts)
    # unique photos: (garment, mark state, mark corner); the corner is fixed per garment
    corners = rng.integers(0, 4, size=len(classes))
    photo_key = rows["garment"] * 2 + rows["marked"].astype(np.int64)  # (R,)
    keys, image_index = np.unique(photo_key, return_inverse=True)
    garment_of, marked_of = keys // 2, keys % 2 == 1
    images = garments[torch.from_numpy(garment_of)]  # (U, C, S, S)
    marked_pos = np.flatnonzero(marked_of)
    images[marked_pos] = stamp_mark(images[marked_pos], corners[garment_of[marked_pos]])
    extra = [ABUSIVE[e] if a else HARMLESS[e] for a, e in zip(rows["abusive"].tolist(), rows["extra"].tolist(),
                                                               strict=True)]  # fmt: skip
    titles = _titles(rows["named"], rows["replica"], extra, rng)
    labels = row_labels(rows, classes)
    log.info("%s %s: %d listings on %d photos (%d seed listings)", NAME, split, len(titles), len(keys), len(classes))
    mark_name = {False: "", True: "+mark"}
    return RawSplit(
        file=f"{NAME}:{split}",
        images=images,
        image_index=torch.from_numpy(image_index),  # (R,)
        texts=[[t] for t in titles],
        labels=labels,
        image_sources=[f"{fashion_mnist.NAME}:{split}/{g}{mark_name[bool(k)]}" for g, k in zip(
            garment_of.tolist(), marked_of.tolist(), strict=True)],  # fmt: skip
        source_rows=list(range(len(titles))),
        text_columns=["title"],
        label_column="labels",
        label_names=list(LABEL_NAMES),
    )
