"""What `vlfuse index` / `zeroshot` read: an image folder, a table, a text file or a built-in split.

SOURCE forms:
- a folder: every image file under it (recursively, sorted by path);
- a table (CSV / TSV / JSONL / JSON / Parquet): its image column (and, with texts, its caption column);
- a `.txt` file (texts only): one text per non-empty line;
- a built-in: "easy-vqa:test", "fashion-mnist:train", or the name alone for all its splits ("fashion-mnist" =
  all 70,000 images). Items of built-ins carry labels: the easy-VQA "color shape" key (None where the questions do
  not give both) or the Fashion-MNIST class name.

Sources are recorded per item ("fashion-mnist:test/12", a file path) so that search results can show them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.builtin import SPLITS
from vlfuse.data.builtin.easy_vqa import NAME as EASY_VQA
from vlfuse.data.builtin.easy_vqa import easy_vqa_key, image_attributes_easy_vqa
from vlfuse.data.builtin.fashion_mnist import NAME as FASHION_MNIST
from vlfuse.data.builtin.tuxpaint import NAME as TUXPAINT
from vlfuse.data.captions import caption_templates, label_prompt
from vlfuse.errors import DataError
from vlfuse.parallel import Share

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".gz", ".bz2", ".xz", ".zst")
BUILTINS = (EASY_VQA, FASHION_MNIST, TUXPAINT)


@dataclass
class ImageChunk:
    images: Tensor  # (n, C, H, W) uint8
    sources: list[str]
    labels: list[str | None]
    number: int = 0  # the chunk's place in the source (chunks of a batch job's processes merge in this order)


def parse_builtin(spec: str) -> tuple[str, list[str]] | None:
    """ "fashion-mnist:test" → ("fashion-mnist", ["test"]); "easy-vqa" → ("easy-vqa", ["train", "test"]); None when
    `spec` names no built-in."""
    name, _, split = spec.partition(":")
    if name not in BUILTINS:
        return None
    if split and split not in SPLITS:
        raise DataError(f"source '{spec}': unknown split {split!r}; expected {name}:train, {name}:test or {name}")
    return name, [split] if split else list(SPLITS)


def _builtin_chunks(name: str, splits: list[str], cfg: DataConfig, chunk: int, share: Share) -> Iterator[ImageChunk]:
    cfg = cfg.model_copy(update={"name": name, "options": {}})
    number = 0
    for split in splits:
        if name == FASHION_MNIST:
            from vlfuse.data.builtin import fashion_mnist

            images, classes = fashion_mnist.load_arrays(split, cfg)  # (M, C, S, S), (M,)
            labels: list[str | None] = [fashion_mnist.CLASSES[c] for c in classes.tolist()]
            sources = [f"{name}:{split}/{i}" for i in range(len(labels))]
        elif name == TUXPAINT:
            from vlfuse.data.builtin import tuxpaint

            raw = tuxpaint.load(split, cfg.model_copy(update={"on_error": "skip"}))
            images, sources, labels = raw.images, raw.image_sources, list(raw.labels)
            for issue in raw.issues:
                log.warning("%s:%s: skipped %s", name, split, issue)
        else:
            from vlfuse.data.builtin import easy_vqa

            raw = easy_vqa.load(split, cfg)
            attributes = image_attributes_easy_vqa(split)
            images, sources = raw.images, raw.image_sources
            ids = [int(s.rsplit("/", 1)[1]) for s in sources]
            labels = [easy_vqa_key(**attributes[i]) if i in attributes else None for i in ids]
        for start in range(0, len(sources), chunk):
            if share.takes(number):
                yield ImageChunk(images[start : start + chunk], sources[start : start + chunk],
                                 labels[start : start + chunk], number)  # fmt: skip
            number += 1


def _table_frame(path: Path, columns: list[str], encoding: str = "utf-8"):
    from vlfuse.data.tables import check_columns, read_table

    df = read_table(path, encoding)
    check_columns(df, columns, str(path))
    return df


def _file_chunks(
    paths: list[str], labels: list[str | None], cfg: DataConfig, chunk: int, share: Share
) -> Iterator[ImageChunk]:
    from vlfuse.data.images import load_images

    for number, start in enumerate(range(0, len(paths), chunk)):
        if not share.takes(number):
            continue  # another process's chunk: not decoded here
        part = paths[start : start + chunk]
        images, errors = load_images(part, size=cfg.image_size, channels=cfg.channels, fit=cfg.fit)  # (n, C, S, S)
        if errors:
            first = next(iter(errors.values()))
            raise DataError(f"{len(errors)} image(s) cannot be decoded; first: {first}")
        yield ImageChunk(images, part, labels[start : start + chunk], number)


def image_chunks(spec: str, cfg: DataConfig, *, image_column: str = "image", label_column: str | None = None,
                 chunk: int = 4096, allow_outside_root: bool = False,
                 share: Share | None = None) -> Iterator[ImageChunk]:  # fmt: skip
    """The images of a SOURCE in chunks, decoded at `cfg.image_size` / `cfg.channels`. A table's image paths must
    stay inside its folder unless `allow_outside_root` (a table to index may come from someone else). With `share`,
    only this process's chunks (round robin) are decoded and yielded.

    Raises:
        DataError: the source does not exist, holds no images, a table row's path is empty or leaves the table's
            folder, or an image cannot be decoded (naming the file).
    """
    share = share or Share()
    builtin = parse_builtin(spec)
    if builtin is not None:
        yield from _builtin_chunks(*builtin, cfg, chunk, share)
        return
    path = Path(spec)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"folder '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        yield from _file_chunks(files, [None] * len(files), cfg, chunk, share)
        return
    if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
        from vlfuse.data.tables import resolve_image_path

        df = _table_frame(path, [image_column, *([label_column] if label_column else [])], cfg.encoding)
        files, labels = [], []
        folder = str(path.parent.absolute())
        for row, value in enumerate(df[image_column].tolist(), start=1):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{path}, row {row}, column '{image_column}': empty image path; expected a path")
            file, leaves = resolve_image_path(value.strip(), folder, folder)
            if leaves and not allow_outside_root:
                where = f"{path}, row {row}, column '{image_column}'"
                raise DataError(f"{where}: image path {value.strip()!r} leaves the table's folder '{folder}'; expected "
                                "a path inside it (or pass --allow-outside-root)")  # fmt: skip
            files.append(file)
            labels.append(None if label_column is None else str(df[label_column].iloc[row - 1]))
        yield from _file_chunks(files, labels, cfg, chunk, share)
        return
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        yield from _file_chunks([str(path)], [None], cfg, chunk, share)
        return
    raise DataError(
        f"source '{spec}' is not an image folder, a table, an image file or a built-in "
        f"({', '.join(f'{b}[:train|:test]' for b in BUILTINS)})"
    )


def text_items(spec: str, *, caption_column: str = "caption") -> tuple[list[str], list[str]]:
    """The texts of a SOURCE: (texts, sources).

    A `.txt` file gives its non-empty lines (source "file:line"); a table its caption column; a built-in the
    canonical caption of each of its labels ("a red circle", labelled "red circle").
    """
    builtin = parse_builtin(spec)
    if builtin is not None:
        name = builtin[0]
        if name == EASY_VQA:
            from vlfuse.data.builtin.easy_vqa import COLORS, SHAPES

            labels = [easy_vqa_key(c, s) for c in COLORS for s in SHAPES]
        else:
            from vlfuse.data.builtin.fashion_mnist import CLASSES

            labels = list(CLASSES)
        template = caption_templates(name, "train")[0]
        texts = [label_prompt(name, label, template) for label in labels]
        return texts, [f"{name}:{label}" for label in labels]
    path = Path(spec)
    if path.is_file() and path.suffix.lower() == ".txt":
        lines = [(i, line.strip()) for i, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
        if not lines:
            raise DataError(f"text file '{path}' has no non-empty lines; expected one text per line")
        return [t for _, t in lines], [f"{path}:{i}" for i, _ in lines]
    if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
        df = _table_frame(path, [caption_column])
        texts = []
        for row, value in enumerate(df[caption_column].tolist(), start=1):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{path}, row {row}, column '{caption_column}': empty text; expected a caption")
            texts.append(value.strip())
        return texts, [f"{path}:{row}" for row in range(1, len(texts) + 1)]
    raise DataError(f"text source '{spec}' is not a .txt file, a table or a built-in ({', '.join(BUILTINS)})")


@lru_cache(maxsize=4)
def _fashion_pixels(split: str, root: str | None) -> np.ndarray:
    from vlfuse.data.builtin import fashion_mnist

    images, _ = fashion_mnist.load_arrays(split, DataConfig(name=FASHION_MNIST, image_size=28, channels=1, root=root))
    return images[:, 0].numpy()  # (M, 28, 28)


@lru_cache(maxsize=2)
def _easy_vqa_paths(split: str) -> dict[int, str]:
    import easy_vqa

    return easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()


def thumbnail(source: str, *, root: str | None = None) -> Image.Image:
    """The image behind an index source, at its own resolution, as RGB (for contact sheets)."""
    name, _, rest = source.partition(":")
    if name in BUILTINS and "/" in rest:
        split, _, number = rest.partition("/")
        if name == FASHION_MNIST:
            return Image.fromarray(_fashion_pixels(split, root)[int(number)]).convert("RGB")
        with Image.open(_easy_vqa_paths(split)[int(number)]) as im:
            return im.convert("RGB")
    with Image.open(source) as im:
        return im.convert("RGB")


def stack_chunks(chunks: Iterator[ImageChunk]) -> ImageChunk:
    """All chunks as one (for small sources and tests)."""
    parts = list(chunks)
    return ImageChunk(torch.cat([p.images for p in parts]), [s for p in parts for s in p.sources],
                      [label for p in parts for label in p.labels])  # fmt: skip
