"""Safe image decoding to numpy: one image file (or file object) → a square uint8 array (C, size, size).

Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) stays on, and an image over it is an error here rather
than a warning. Truncated files are errors too (`ImageFile.LOAD_TRUNCATED_IMAGES` is left off). No torch here, so
that the ONNX prediction path (`vlfuse.export.runtime`) starts without it; `vlfuse.data.images` gives tensors.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlfuse.errors import DataError

# Pillow warns between MAX_IMAGE_PIXELS and twice that (and raises above); make the warning an exception too.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

_MODES = {1: "L", 3: "RGB"}


def check_args(size: int, channels: int) -> None:
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


def decode_pixels(fp: str | Path | BinaryIO, source: str, size: int, channels: int, fit: str = "stretch") -> np.ndarray:
    """Open, verify the pixel budget, decode, convert and resize one image → (C, size, size) uint8. Raises DataError
    naming `source`."""
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
    if array.ndim == 2:
        return array[None].copy()  # (1, H, W)
    return np.ascontiguousarray(array.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def load_pixels(path: str | Path, *, size: int, channels: int = 3, fit: str = "stretch") -> np.ndarray:
    """An image file → (channels, size, size) uint8 (see `vlfuse.data.images.load_image`, its tensor form)."""
    check_args(size, channels)
    return decode_pixels(str(path), str(path), size, channels, fit)


def refit_pixels(array: np.ndarray, size: int, channels: int, fit: str = "stretch") -> np.ndarray:
    """(C, H, W) uint8 pixels → (channels, size, size) uint8, converted and resized as a decoded file would be (a
    no-op when they already are)."""
    if array.shape == (channels, size, size):
        return array
    im = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    out = np.asarray(_fit(im.convert(_MODES[channels]), size, fit))  # (H, W) or (H, W, C)
    return out[None].copy() if out.ndim == 2 else np.ascontiguousarray(out.transpose(2, 0, 1))
