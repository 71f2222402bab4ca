"""Vocabularies shipped as data: the 1,000 ImageNet-1k classes in the classifiers' order, each with its WordNet id,
names and WordNet gloss (`imagenet_classes.tsv`, taken from WordNet 3.0 through the ImageNet synset list)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

IMAGENET_FILE = Path(__file__).with_name("imagenet_classes.tsv")


@dataclass(frozen=True)
class ImageNetClass:
    wnid: str  # "n01440764"
    names: tuple[str, ...]  # ("tench", "Tinca tinca")
    definition: str  # "freshwater dace-like game fish of Europe and western Asia ..."


@cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet-1k classes in index order."""
    rows = []
    for line in IMAGENET_FILE.read_text(encoding="utf-8").splitlines():
        wnid, names, definition = line.split("\t")
        rows.append(ImageNetClass(wnid, tuple(n.strip() for n in names.split(",")), definition.strip()))
    return tuple(rows)


def imagenet_names() -> list[str]:
    """The first name of each ImageNet-1k class, in index order ("tench", "goldfish", …)."""
    return [c.names[0] for c in imagenet_classes()]
