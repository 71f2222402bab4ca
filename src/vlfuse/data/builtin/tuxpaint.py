"""Tux Paint's captioned stamps (Debian `tuxpaint-stamps-default`, GPL-2): real photos and drawings with a caption.

Each stamp is `<root>/<category>/.../NAME.png` (or `.svg`) with `NAME.txt` beside it whose first line is an English
caption ("A crow.", "A pickup truck."); the category is the first folder. The files are read where Debian installs
them at run time and never copied into vlfuse.

- PNGs are mostly photos cut out on a transparent background: they are composited onto `options.background`,
  padded to a square (the object is not stretched) and resized to `data.image_size`.
- SVGs are drawings, rendered with the `resvg-py` wheel; without it (or for a file it cannot render) the stamp is
  skipped under `on_error: skip` and reported, with the reason, as a data issue.
- `symbols/` (signs, coins, letters) is left out unless `options.include_symbols`.
- The split is fixed by image: a stamp is in `test` when the first 8 hex digits of the sha1 of its path relative to
  the root are ≡ 0 (mod 5), about 20 %; validation is carved from `train` as for every built-in (`val_fraction`).

As a classification dataset a row is (image, caption) → category; as captioned images (`vlfuse.data.captions`) an
image's key is its caption, and its attributes hold category, caption, `phrase` (the caption's noun phrase) and
`object` (its head noun: what a generated caption must name to count as naming the object).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from vlfuse.config import DataConfig
from vlfuse.data.splits import DataIssue, RawSplit
from vlfuse.errors import DataError

NAME = "tuxpaint"
DEFAULT_ROOT = Path("/usr/share/tuxpaint/stamps")
INSTALL = "apt-get install tuxpaint-stamps-default (as root)"
OPTIONS: dict[str, object] = {"include_symbols": False, "background": "white", "svg": True}
CATEGORIES = [
    "animals", "clothes", "food", "hobbies", "household", "medical", "military", "naturalforces", "people", "plants",
    "seasonal", "space", "sports", "town", "vehicles",
]  # fmt: skip
CATEGORY_WORDS = {"naturalforces": "natural forces"}  # a category's words for prompts ("a photo of natural forces")
CAPTION_TEMPLATES = {"train": ["{}"], "heldout": ["{}"]}  # the caption is the key itself
PROMPT_SLOTS: tuple[str, ...] = ()
TEST_MODULUS = 5
_ARTICLE = re.compile(r"^(an?|the|some|two|three|several|a pair of|a group of|a bunch of)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Stamp:
    path: Path  # the image file
    relative: str  # its path below the root, e.g. "animals/birds/crow.png"
    category: str
    caption: str  # the first line of NAME.txt, stripped


def root_of(cfg: DataConfig) -> Path:
    root = Path(cfg.root) if cfg.root else DEFAULT_ROOT
    if not root.is_dir():
        raise DataError(f"{NAME}: '{root}' does not exist. Install the stamps with `{INSTALL}`, or set data.root to "
                        "a folder of <category>/.../NAME.png + NAME.txt stamps")  # fmt: skip
    return root


def installed(root: Path = DEFAULT_ROOT) -> bool:
    return root.is_dir() and (any(root.glob("*/*.txt")) or any(root.glob("*/*/*.txt")))


def object_phrase(caption: str) -> str:
    """The object a caption names: its first clause without article or final punctuation ("A pickup truck." →
    "pickup truck"; "A US 25 cent piece ($.25) called a quarter." → "us 25 cent piece")."""
    head = re.split(r"[.,;:!?(]| - | called | with | on | in | that | which ", caption.strip(), maxsplit=1)[0]
    return _ARTICLE.sub("", head.strip()).strip().lower()


def head_noun(caption: str) -> str:
    """The last word of the caption's object phrase: what a caption of the image must name ("pickup truck" →
    "truck"; "spider playing soccer" → "spider")."""
    phrase = object_phrase(caption)
    phrase = re.split(r" (?:playing|wearing|holding|eating|sitting|standing|riding|and) ", phrase, maxsplit=1)[0]
    words = phrase.split()
    return words[-1] if words else ""


def split_of(relative: str) -> str:
    digest = hashlib.sha1(relative.encode()).hexdigest()
    return "test" if int(digest[:8], 16) % TEST_MODULUS == 0 else "train"


@lru_cache(maxsize=4)
def _scan(root: Path, include_symbols: bool, svg: bool) -> tuple[Stamp, ...]:
    """Every captioned stamp below `root`, sorted by relative path (a stamp without a caption file is not one)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in ((".png", ".svg") if svg else (".png",)) or not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        category = relative.split("/", 1)[0]
        if (category == "symbols" and not include_symbols) or "/" not in relative:
            continue
        text = path.with_suffix(".txt")
        if not text.is_file():
            continue
        first = text.read_text(encoding="utf-8", errors="replace").splitlines()
        caption = first[0].strip() if first else ""
        if caption:
            found.append(Stamp(path, relative, category, caption))
    return tuple(found)


def stamps(split: str, cfg: DataConfig) -> list[Stamp]:
    """The stamps of one split ("train" / "test")."""
    opts, root = {**OPTIONS, **cfg.options}, root_of(cfg)
    found = _scan(root, bool(opts["include_symbols"]), bool(opts["svg"]))
    if not found:
        raise DataError(f"{NAME}: no captioned stamps (NAME.png + NAME.txt) below '{root}'")
    return [s for s in found if split_of(s.relative) == split]


def _render_svg(path: Path, size: int) -> Image.Image:
    if importlib.util.find_spec("resvg_py") is None:
        raise DataError("SVG stamps need the 'resvg-py' package (pip install resvg-py); skipped")
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(svg_path=str(path), width=size * 2)
    except (ValueError, OSError) as err:
        raise DataError(f"resvg cannot render this SVG ({err})") from None
    return Image.open(io.BytesIO(bytes(png)))


def decode_stamp(path: Path, size: int, background: str = "white") -> Tensor:
    """One stamp → (3, size, size) uint8: transparency composited onto `background`, padded square, resized.

    Raises:
        DataError: unreadable, empty or unrenderable file (the message names the reason, not the file).
    """
    try:
        im = _render_svg(path, size) if path.suffix.lower() == ".svg" else Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"not a readable image ({err})") from None
    if im.width == 0 or im.height == 0:
        raise DataError("the image is empty (0 pixels)")
    rgba = im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, background)
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    side = max(rgb.size)
    square = ImageOps.pad(rgb, (side, side), color=background)  # centred, aspect kept
    square = square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return torch.from_numpy(np.array(square, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # (3, S, S)


def _decode_all(chosen: list[Stamp], size: int, background: str) -> tuple[np.ndarray, list[int], list[str]]:
    """(M, 3, S, S) uint8 of the stamps that decode, their positions in `chosen`, and per stamp its error or ""."""
    images, kept, errors = [], [], []
    for row, stamp in enumerate(chosen):
        try:
            images.append(decode_stamp(stamp.path, size, background).numpy())
            kept.append(row)
            errors.append("")
        except DataError as err:
            errors.append(str(err))
    stacked = np.stack(images) if images else np.zeros((0, 3, size, size), np.uint8)
    return stacked, kept, errors


def _cached_decode(chosen: list[Stamp], size: int, background: str) -> tuple[np.ndarray, list[int], list[str]]:
    """`_decode_all`, kept in vlfuse's cache (rendering the SVGs costs ~85 ms each). The key covers every file's
    path, size and modification time, the size, the background and whether an SVG renderer is installed."""
    from vlfuse.atomic import atomic_write
    from vlfuse.pretrained import cache_root

    digest = hashlib.sha256(f"{size}:{background}:{importlib.util.find_spec('resvg_py') is not None}".encode())
    for stamp in chosen:
        stat = stamp.path.stat()
        digest.update(f"{stamp.relative}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    file = cache_root() / "datasets" / f"{NAME}-{digest.hexdigest()[:16]}.npz"
    if file.is_file():
        with np.load(file) as saved:
            return saved["images"], saved["kept"].tolist(), saved["errors"].tolist()
    images, kept, errors = _decode_all(chosen, size, background)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a temporary name
            np.savez(fh, images=images, kept=np.array(kept, dtype=np.int64), errors=np.array(errors, dtype=str))

    atomic_write(file, write)  # whole or not at all
    return images, kept, errors


def _load(split: str, cfg: DataConfig) -> tuple[Tensor, list[Stamp], list[DataIssue]]:
    if cfg.channels != 3:
        raise DataError(f"{NAME}: images are colour; set data.channels: 3 (got {cfg.channels})")
    background = str({**OPTIONS, **cfg.options}["background"])
    chosen = stamps(split, cfg)
    images, kept, errors = _cached_decode(chosen, cfg.image_size, background)  # images: (M, 3, S, S)
    issues = []
    for row, (stamp, error) in enumerate(zip(chosen, errors, strict=True)):
        if not error:
            continue
        if cfg.on_error == "raise":
            raise DataError(f"{NAME}: '{stamp.path}': {error} (data.on_error: skip reports and skips it)")
        issues.append(DataIssue(str(stamp.path), row, "image", error))
    if not kept:
        raise DataError(f"{NAME}:{split}: none of the {len(chosen)} stamps could be decoded; first: {issues[:1]}")
    return torch.from_numpy(images), [chosen[i] for i in kept], issues  # (M, 3, S, S)


def load(split: str, cfg: DataConfig) -> RawSplit:
    """One split as classification rows: (image, caption) → category."""
    images, kept, issues = _load(split, cfg)
    return RawSplit(
        file=f"{NAME}:{split}",
        images=images,
        image_index=torch.arange(len(kept)),
        texts=[[s.caption] for s in kept],
        labels=[s.category for s in kept],
        image_sources=[str(s.path) for s in kept],
        source_rows=list(range(len(kept))),
        text_columns=["caption"],
        label_column="category",
        label_names=sorted({s.category for s in kept} | set(CATEGORIES)),
        issues=issues,
    )


def caption_images(split: str, cfg: DataConfig) -> tuple[Tensor, list[str], list[str], list[dict[str, str]], list]:
    """One split as captioned images: keys are the captions, attributes category / caption / object."""
    images, kept, issues = _load(split, cfg)
    attributes = [{"category": s.category, "caption": s.caption, "phrase": object_phrase(s.caption),
                   "object": head_noun(s.caption)} for s in kept]  # fmt: skip
    return images, [str(s.path) for s in kept], [s.caption for s in kept], attributes, issues


def label_prompt(name: str, label: str, template: str) -> str:
    """Tux Paint has no slots of its own: `{}` takes the label as given."""
    return template.replace("{}", label)
