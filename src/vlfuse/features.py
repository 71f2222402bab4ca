"""On-disk cache of frozen image-encoder features: computed once, reused by every later epoch and run.

A cache entry is keyed by everything that determines the features:
- the encoder (`encoder.cache_key()`: its name, config and weights file),
- the preprocessing (normalisation mean / std and channels; the image size is part of the pixels),
- the data (a SHA-256 of the uint8 pixels of every image, in order).
Changing any of them gives a new key, so a stale entry is never read. Entries are written to a temporary file and
renamed into place, so an interrupted run never leaves a truncated entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from vlfuse.atomic import atomic_write
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.pretrained import cache_root
from vlfuse.types import EncoderOutput

log = logging.getLogger(__name__)


def images_fingerprint(images: Tensor) -> str:
    """SHA-256 of a uint8 image tensor's shape and pixels."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def feature_cache_key(encoder: nn.Module, preprocess: ImagePreprocessor, images: Tensor) -> str:
    """The cache key of `encoder`'s features of `images` under `preprocess` (see the module docstring)."""
    if not hasattr(encoder, "cache_key"):
        raise TypeError(f"{type(encoder).__name__} has no cache_key(): only frozen pretrained encoders are cached")
    parts = {
        "encoder": encoder.cache_key(),
        "mean": preprocess.mean.flatten().tolist(),
        "std": preprocess.std.flatten().tolist(),
        "images": images_fingerprint(images),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


@torch.inference_mode()
def compute_features(
    encoder: nn.Module, images: Tensor, preprocess: ImagePreprocessor, *, batch_size: int = 64
) -> EncoderOutput:
    """Encode every image (no augmentation): tokens (M, N, D) and pooled (M, D)."""
    encoder.eval()
    tokens, pooled = [], []
    for start in range(0, len(images), batch_size):
        out = encoder(preprocess(images[start : start + batch_size]))  # tokens (b, N, D), pooled (b, D)
        tokens.append(out.tokens)
        pooled.append(out.pooled)
    return EncoderOutput(tokens=torch.cat(tokens), pooled=torch.cat(pooled))


def cached_features(
    encoder: nn.Module,
    images: Tensor,
    preprocess: ImagePreprocessor,
    *,
    batch_size: int = 64,
    folder: Path | None = None,
) -> EncoderOutput:
    """`compute_features`, read from the cache when an entry with the same key exists, else computed and stored.

    Args:
        encoder: a frozen encoder with `cache_key()`.
        images: (M, C, H, W) uint8.
        preprocess: the (non-augmenting) preprocessing the encoder sees.
        batch_size: images per encoder call.
        folder: cache folder (default: `cache_root()/features`).

    Returns:
        tokens (M, N, D) and pooled (M, D), float32.
    """
    folder = folder or cache_root() / "features"
    path = folder / f"{feature_cache_key(encoder, preprocess, images)}.safetensors"
    if path.is_file():
        stored = load_file(str(path))
        log.info("image features: %d from the cache (%s)", len(images), path.name)
        return EncoderOutput(tokens=stored["tokens"], pooled=stored["pooled"])
    started = time.perf_counter()
    out = compute_features(encoder, images, preprocess, batch_size=batch_size)
    log.info("image features: %d computed in %.1f s, cached as %s", len(images), time.perf_counter() - started,
             path.name)  # fmt: skip
    tensors = {"tokens": out.tokens.contiguous(), "pooled": out.pooled.contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    return out
