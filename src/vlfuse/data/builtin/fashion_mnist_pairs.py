"""Fashion-MNIST image–caption matching: does the caption name the garment in the image? ("match" / "mismatch").

Every image gets `pairs_per_image` captions, alternating match / mismatch over the rows (exactly balanced). A
mismatch caption names one of the nine other classes, uniformly. With balanced classes the caption's class is then
uniform whatever the label, and every image is paired both ways, so neither modality alone beats chance.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from vlfuse.config import DataConfig
from vlfuse.data.builtin import fashion_mnist
from vlfuse.data.splits import RawSplit
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

NAME = "fashion-mnist-pairs"
LABEL_NAMES = ["mismatch", "match"]  # binary: 1 = match
OPTIONS = {"pairs_per_image": 2}

# Per class (Fashion-MNIST order): (phrase with article, bare phrase) synonyms.
SYNONYMS: list[list[tuple[str, str]]] = [
    [("a t-shirt", "t-shirt"), ("a top", "top"), ("a tee", "tee")],
    [("a pair of trousers", "trousers"), ("a pair of pants", "pants"), ("a pair of jeans", "jeans")],
    [("a pullover", "pullover"), ("a sweater", "sweater"), ("a jumper", "jumper")],
    [("a dress", "dress"), ("a gown", "gown"), ("a frock", "frock")],
    [("a coat", "coat"), ("a jacket", "jacket"), ("an overcoat", "overcoat")],
    [("a sandal", "sandal"), ("a pair of sandals", "sandals"), ("a flip-flop", "flip-flop")],
    [("a shirt", "shirt"), ("a button-up shirt", "button-up shirt"), ("a blouse", "blouse")],
    [("a sneaker", "sneaker"), ("a trainer", "trainer"), ("a running shoe", "running shoe")],
    [("a bag", "bag"), ("a handbag", "handbag"), ("a purse", "purse")],
    [("an ankle boot", "ankle boot"), ("a boot", "boot"), ("a pair of ankle boots", "ankle boots")],
]
TEMPLATES = [
    "a photo of {a}",
    "this is {a}",
    "{n} shown in black and white",
    "a small greyscale picture of {a}",
    "{a} on a dark background",
    "an image showing {a}",
    "look, {a}!",
    "a low resolution photo of {a}",
    "{n}",
    "product photo: {n}",
    "someone is selling {a}",
]
CAPTIONS = [[[t.format(a=a, n=n) for t in TEMPLATES] for a, n in syns] for syns in SYNONYMS]  # [class][syn][tmpl]


def make_pairs(
    classes: np.ndarray, rng: np.random.Generator, pairs_per_image: int = 2
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Build the caption pairs for images of the given classes.

    Args:
        classes: (N,) class id of each image.
        rng: the random generator (determinism comes from its seed).
        pairs_per_image: captions per image (P).

    Returns:
        image_rows: (N*P,) image position of each pair.
        caption_classes: (N*P,) class the caption names.
        captions: N*P caption strings.
        match: (N*P,) bool, True where the caption names the image's class.
    """
    n_classes = len(SYNONYMS)
    image_rows = np.repeat(np.arange(len(classes)), pairs_per_image)  # (N*P,)
    true_class = classes[image_rows]  # (N*P,)
    match = np.arange(len(image_rows)) % 2 == 0  # (N*P,) exactly balanced when N*P is even
    offset = rng.integers(1, n_classes, size=len(image_rows))  # uniform over the other classes
    caption_classes = np.where(match, true_class, (true_class + offset) % n_classes)
    n_syn = np.array([len(s) for s in SYNONYMS])
    synonym = rng.integers(0, n_syn[caption_classes])  # (N*P,)
    template = rng.integers(0, len(TEMPLATES), size=len(image_rows))  # (N*P,)
    picks = zip(caption_classes.tolist(), synonym.tolist(), template.tolist(), strict=True)
    captions = [CAPTIONS[c][s][t] for c, s, t in picks]
    return image_rows, caption_classes, captions, match


def pairs_per_image(cfg: DataConfig) -> int:
    value = cfg.options.get("pairs_per_image", OPTIONS["pairs_per_image"])
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"data.options.pairs_per_image must be a whole number >= 1, got {value!r}")
    return value


def load(split: str, cfg: DataConfig) -> RawSplit:
    """Caption pairs for one Fashion-MNIST split (text column "caption"); deterministic in cfg.split_seed."""
    per_image = pairs_per_image(cfg)
    images, classes = fashion_mnist.load_arrays(split, cfg)  # (M, C, S, S), (M,)
    rng = np.random.default_rng([cfg.split_seed, 0 if split == "train" else 1])
    image_rows, _, captions, match = make_pairs(classes, rng, per_image)
    log.info("%s %s: %d pairs on %d images", NAME, split, len(captions), len(classes))
    return RawSplit(
        file=f"{NAME}:{split}",
        images=images,
        image_index=torch.from_numpy(image_rows),  # (N,)
        texts=[[c] for c in captions],
        labels=[LABEL_NAMES[int(m)] for m in match.tolist()],
        image_sources=[f"{fashion_mnist.NAME}:{split}/{i}" for i in range(len(classes))],
        source_rows=list(range(len(captions))),
        text_columns=["caption"],
        label_column="label",
        label_names=list(LABEL_NAMES),
    )
