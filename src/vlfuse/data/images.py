"""Safe image decoding: one image file (or bytes) → a square uint8 tensor (C, size, size); many files with a thread
pool. The decoding itself, its limits and its errors are `vlfuse.data.pixels` (numpy, no torch)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from vlfuse.data.pixels import check_args, decode_pixels
from vlfuse.errors import DataError

log = logging.getLogger(__name__)


def _decode(fp: str | Path | BinaryIO, source: str, size: int, channels: int, fit: str = "stretch") -> Tensor:
    return torch.from_numpy(decode_pixels(fp, source, size, channels, fit))  # (C, size, size)


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
    check_args(size, channels)
    return _decode(os.fspath(path), os.fspath(path), size, channels, fit)


def decode_image_bytes(
    data: bytes, *, size: int, channels: int = 3, source: str = "<bytes>", fit: str = "stretch"
) -> Tensor:
    """Decode an encoded image (PNG, JPEG, ...) held in memory; `source` names it in error messages."""
    check_args(size, channels)
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
    check_args(size, channels)
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
