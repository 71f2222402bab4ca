"""Safe image decoding: one image file (or bytes) → a square uint8 tensor (C, size, size).

Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) stays on, and an image over it is an error here rather
than a warning. Truncated files are errors too (`ImageFile.LOAD_TRUNCATED_IMAGES` is left off).
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from vlfuse.errors import DataError

log = logging.getLogger(__name__)

# Pillow warns between MAX_IMAGE_PIXELS and twice that (and raises above); make the warning an exception too.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

_MODES = {1: "L", 3: "RGB"}


def _check_args(size: int, channels: int) -> None:
    if channels not in _MODES:
        raise DataError(f"image channels must be 1 (greyscale) or 3 (RGB), got {channels}")
    if size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {size}")


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Composite images with transparency onto white, so transparent areas do not turn into arbitrary colours."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im


CROP_FRACTION = 0.875  # "crop": the central 87.5 % of the shorter side, as ImageNet classifiers are evaluated


def _fit(im: Image.Image, size: int, fit: str) -> Image.Image:
    """Resize to size × size: "stretch" (aspect not kept) or "crop" (shorter side to size / 0.875, centre crop)."""
    if fit == "crop":
        scale = size / CROP_FRACTION / min(im.size)
        im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))),
                       Image.Resampling.BICUBIC, reducing_gap=2.0)  # fmt: skip
        left, top = (im.width - size) // 2, (im.height - size) // 2
        return im.crop((left, top, left + size, top + size))
    if fit != "stretch":
        raise DataError(f"image fit {fit!r} is unknown; expected stretch or crop")
    return im.resize((size, size), Image.Resampling.BILINEAR) if im.size != (size, size) else im


def _decode(fp: str | Path | BinaryIO, source: str, size: int, channels: int, fit: str = "stretch") -> Tensor:
    """Open, verify the pixel budget, decode, convert and resize one image. Raises DataError naming `source`."""
    try:
        with Image.open(fp) as im:
            width, height = im.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > limit:
                raise DataError(
                    f"image '{source}' is {width}x{height} = {width * height:,} pixels, over the decompression-bomb "
                    f"limit of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS); expected a smaller image"
                )
            im.draft(_MODES[channels], (size, size))  # JPEG only: decode at reduced scale when much larger
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _fit(_flatten_alpha(im).convert(_MODES[channels]), size, fit)  # antialiased when shrinking
            array = np.asarray(im)  # (H, W) or (H, W, C)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image file '{source}' does not exist; expected a readable image file") from None
    except (IsADirectoryError, PermissionError) as err:
        raise DataError(f"image file '{source}' cannot be read ({err.strerror}); expected a readable file") from None
    except UnidentifiedImageError:
        raise DataError(f"'{source}' is not an image Pillow can read; expected e.g. a PNG or JPEG file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(
            f"image '{source}' exceeds the decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS): {err}; "
            "expected a smaller image"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise DataError(f"image '{source}' is truncated or corrupt ({err}); expected a complete image file") from None
    tensor = torch.from_numpy(array.copy())
    if tensor.ndim == 2:
        return tensor.unsqueeze(0)  # (1, H, W)
    return tensor.permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


def load_image(path: str | Path, *, size: int, channels: int = 3, fit: str = "stretch") -> Tensor:
    """Decode an image file into a (channels, size, size) uint8 tensor.

    Args:
        path: image file path.
        size: output side length in pixels.
        channels: 3 for RGB, 1 for greyscale.
        fit: "stretch" resizes the whole image to the square; "crop" keeps the aspect and crops the centre.

    Raises:
        DataError: the file is missing, not an image, truncated/corrupt or over the pixel limit.
    """
    _check_args(size, channels)
    return _decode(os.fspath(path), os.fspath(path), size, channels, fit)


def decode_image_bytes(
    data: bytes, *, size: int, channels: int = 3, source: str = "<bytes>", fit: str = "stretch"
) -> Tensor:
    """Decode an encoded image (PNG, JPEG, ...) held in memory; `source` names it in error messages."""
    _check_args(size, channels)
    if not data:
        raise DataError(f"image '{source}' is empty (0 bytes); expected an encoded image such as PNG or JPEG")
    return _decode(io.BytesIO(data), source, size, channels, fit)


def load_images(
    paths: Sequence[str | Path], *, size: int, channels: int = 3, workers: int | None = None, fit: str = "stretch"
) -> tuple[Tensor, dict[int, DataError]]:
    """Decode many image files with a thread pool (Pillow releases the GIL while decoding).

    Returns:
        images: (M, C, size, size) uint8, one per path; zeros where decoding failed.
        errors: position in `paths` → the DataError for each image that could not be decoded.
    """
    _check_args(size, channels)
    images = torch.zeros((len(paths), channels, size, size), dtype=torch.uint8)  # (M, C, S, S)
    errors: dict[int, DataError] = {}

    def work(positions: range) -> None:
        for i in positions:
            try:
                images[i] = load_image(paths[i], size=size, channels=channels, fit=fit)
            except DataError as err:
                errors[i] = err

    workers = max(1, min(workers or (os.cpu_count() or 1), len(paths) // 256))
    if workers == 1:
        work(range(len(paths)))
    else:  # one contiguous chunk per thread keeps the pool overhead negligible
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, [range(k, len(paths), workers) for k in range(workers)]))
    if errors:
        log.debug("%d of %d images could not be decoded", len(errors), len(paths))
    return images, errors
