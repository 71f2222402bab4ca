"""Fitting a run's out-of-distribution detector from its own training images (`vlfuse ood RUN`).

- a bridge run: its training split's images, validation carved by image exactly as its training did
  (`eval.val_fraction`, the run's seed); features are the frozen image encoder's pooled visual tokens;
- a photo run (zero training): the reference photos of its `data` section (Tux Paint's stamps by default), with
  `data.val_fraction` of them held out, set the threshold of its classifier's confidence (`ConfidenceDetector`).

The detector is written to `<run>/ood.safetensors` (see `vlfuse.ood`); a loaded run then scores every input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlfuse.ood import IMAGENET_HEAD, OOD_FILE, ConfidenceDetector, Detector, FeatureDensity


def _features(run: Any, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([run.ood_inputs(images[i : i + batch]) for i in range(0, len(images), batch)])  # (N, D)


def fit_run_ood(run: Any, *, quantile: float = 0.99, components: int = 32, out: Path | None = None,
                detector: str | None = None) -> Detector:  # fmt: skip
    """Fit `run`'s detector on its training images and save it (to `out`, default the run's own folder).

    `detector`: "density" (default for bridges) or "confidence" (the photo run's; for a bridge over a frozen
    EfficientNet-Lite0 without taps, the ImageNet classifier layer applied to its pooled features).

    Raises:
        TaskError: a run of a task without visual features to score, or a detector the run cannot have.
    """
    from vlfuse.errors import TaskError

    detector = detector or ("confidence" if run.task == "photo" else "density")
    if detector not in ("density", "confidence"):
        raise TaskError(f"unknown OOD detector {detector!r}; expected density or confidence")
    if run.task == "photo" and detector == "density":  # measured: it scores flat synthetic images as typical
        raise TaskError("a photo run's OOD detector is its classifier's confidence (--detector confidence)")

    if run.task == "bridge":
        from vlfuse.bridge.data import load_bridge_split

        cfg = run.cfg
        full = load_bridge_split(cfg.data, "train", cfg.caption_prompt, n_templates=cfg.caption_templates)
        train, held = full.split_by_image(cfg.eval.val_fraction, cfg.seed)
        train_images, held_images, source = train.images, held.images, f"{cfg.data.name}:train"
    elif run.task == "photo":
        from vlfuse.data.splits import split_by_group
        from vlfuse.retrieval.data import load_captioned

        cfg = run.cfg
        images = load_captioned(cfg, "train")
        _, held_rows = split_by_group(np.arange(len(images)), cfg.data.val_fraction, cfg.data.split_seed,
                                         images.file)  # fmt: skip
        train_images, held_images, source = None, images.images[held_rows], images.file
    else:
        raise TaskError(f"run '{run.path}' is a {run.task} run; `vlfuse ood` fits bridge and photo runs")
    if run.task == "photo":
        density: Detector = ConfidenceDetector.fit(_features(run, held_images), quantile=quantile, source=source)
    elif detector == "confidence":
        encoder = run.cfg.model.image_encoder
        if encoder.name != "efficientnet_lite0" or getattr(encoder, "taps", []):
            raise TaskError(f"run '{run.path}': a confidence detector needs the ImageNet classifier's features: an "
                            f"efficientnet_lite0 image encoder without taps (this one: {encoder.name})")  # fmt: skip
        density = ConfidenceDetector.fit(_features(run, held_images), quantile=quantile, source=source,
                                         head=IMAGENET_HEAD)  # fmt: skip
    else:
        density = FeatureDensity.fit(_features(run, train_images), _features(run, held_images),
                                     components=components, quantile=quantile, source=source)  # fmt: skip
    density.save((out or Path(run.path)) / OOD_FILE)
    run.ood = density
    return density
