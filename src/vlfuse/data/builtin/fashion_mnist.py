"""Fashion-MNIST from its four IDX files (Debian package `dataset-fashion-mnist`, or any folder holding them).

60,000 train / 10,000 test greyscale 28×28 images in 10 classes; image-only (no text). As captioned images (see
`vlfuse.data.captions`), an image's key is its class name, its captions that name put into `CAPTION_TEMPLATES`.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.splits import DataIssue, RawSplit
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

NAME = "fashion-mnist"
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_PREFIX = {"train": "train", "test": "t10k"}
_MAGIC = {"images-idx3": (2051, 16), "labels-idx1": (2049, 8)}  # magic number, header length


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{NAME}: '{folder / (stem + '.gz')}' does not exist. Install the data with "
        "`apt-get install dataset-fashion-mnist` (as root), or set data.root to a folder holding "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz"
    )


def installed(folder: Path = DEFAULT_ROOT) -> bool:
    """Whether `folder` holds the four IDX files of both splits (gzipped or not)."""
    try:
        for prefix in _PREFIX.values():
            for kind in _MAGIC:
                _find(folder, f"{prefix}-{kind}-ubyte")
    except DataError:
        return False
    return True


def _read_idx(path: Path, kind: str) -> np.ndarray:
    """The uint8 payload of an IDX file, checked against its header."""
    magic, offset = _MAGIC[kind]
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"{NAME}: cannot read '{path}' ({err}); expected a (gzipped) IDX file") from None
    header = np.frombuffer(raw[:offset], dtype=">i4") if len(raw) >= offset else np.zeros(0)
    if len(header) == 0 or header[0] != magic:
        raise DataError(f"{NAME}: '{path}' is not an IDX {kind} file (expected magic number {magic})")
    data = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    expected = int(np.prod(header[1:]))
    if data.size != expected:
        raise DataError(f"{NAME}: '{path}' holds {data.size} bytes of data, its header promises {expected}")
    return data.reshape(*header[1:].tolist())


def resize_batch(images: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """Bilinear, antialiased resize of (N, C, H, W) uint8 images to (N, C, size, size) uint8, in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)  # (N, C, S, S)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = part.round().clamp(0, 255).to(torch.uint8)
    return out


def load_arrays(split: str, cfg: DataConfig) -> tuple[Tensor, np.ndarray]:
    """(N, C, S, S) uint8 images at cfg.image_size / cfg.channels and (N,) int class ids of one split."""
    if split not in _PREFIX:
        raise DataError(f"{NAME}: unknown split {split!r}; expected 'train' or 'test'")
    folder = Path(cfg.root).expanduser() if cfg.root else DEFAULT_ROOT
    prefix = _PREFIX[split]
    pixels = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"), "images-idx3")  # (N, 28, 28)
    classes = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"), "labels-idx1")  # (N,)
    if len(pixels) != len(classes) or pixels.ndim != 3:
        raise DataError(f"{NAME}: {split} has {len(pixels)} images but {len(classes)} labels in '{folder}'")
    if classes.max() >= len(CLASSES):
        raise DataError(f"{NAME}: {split} labels hold class id {classes.max()}; expected 0..{len(CLASSES) - 1}")
    images = resize_batch(torch.from_numpy(pixels.copy()).unsqueeze(1), cfg.image_size)  # (N, 1, S, S)
    if cfg.channels == 3:
        log.warning("%s is greyscale; repeating it to 3 channels as data.channels=3 (set data.channels: 1)", NAME)
        images = images.expand(-1, 3, -1, -1).contiguous()  # (N, 3, S, S)
    return images, classes.astype(np.int64)


def load(split: str, cfg: DataConfig) -> RawSplit:
    """One split, image-only, labels are the class names."""
    images, classes = load_arrays(split, cfg)
    n = len(classes)
    return RawSplit(
        file=f"{NAME}:{split}",
        images=images,
        image_index=torch.arange(n),
        texts=None,
        labels=[CLASSES[c] for c in classes.tolist()],
        image_sources=[f"{NAME}:{split}/{i}" for i in range(n)],
        source_rows=list(range(n)),
        label_column="class",
        label_names=list(CLASSES),
    )


# ---------------------------------------------------------------- captions
# {a} = the class name with its article ("an ankle boot"), {n} = the bare class name.
CAPTION_TEMPLATES = {
    "train": [
        "{a}",
        "an image of {a}",
        "a picture of {a}",
        "{a} on a dark background",
        "a greyscale image of {a}",
        "this is {a}",
        "a small {n}",
        "there is {a} in the image",
    ],
    "heldout": [
        "a photo of {a}",
        "a low resolution photo of {a}",
        "a black and white photo of {a}",
        "a product photo of {a}",
        "it is {a}",
    ],
}
PROMPT_SLOTS = ("{a}", "{n}")  # the template slots `label_prompt` fills


def with_article(phrase: str) -> str:
    """'an ankle boot', 'a dress' (by the first letter; good enough for the built-in names)."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def fashion_mnist_caption(class_name: str, template: str = CAPTION_TEMPLATES["train"][0]) -> str:
    """A caption from a Fashion-MNIST class name ("Ankle boot" → "an ankle boot" with the default template)."""
    name = class_name.lower()
    return template.format(a=with_article(name), n=name)


def label_prompt(name: str, label: str, template: str) -> str:
    """A label put into a template with {a} / {n} slots: any label name, of any dataset, fits them."""
    return fashion_mnist_caption(label, template)


def caption_images(
    split: str, cfg: DataConfig
) -> tuple[Tensor, list[str], list[str], list[dict[str, str]], list[DataIssue]]:
    """Every image of one split: (images, sources, keys = class names, attributes, issues = none)."""
    images, classes = load_arrays(split, cfg)  # (M, C, S, S), (M,)
    names = [CLASSES[c] for c in classes.tolist()]
    return images, [f"{NAME}:{split}/{i}" for i in range(len(names))], names, [{"class": n} for n in names], []
