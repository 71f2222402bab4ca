"""Out-of-distribution scores: how far an image's visual feature lies from the features a model was trained on.

A run's detector is fitted on its training images' pooled visual features (`FeatureDensity.fit`): the mean, the
top principal directions with their spreads, and the size of what they leave unexplained. An input's score is

    score = mean_i z_i² + r² / r̄²      z = the feature's coordinates along the k directions, in spreads
                                        r = the part of the feature off those directions, r̄² its mean in training

(a Mahalanobis distance in the principal subspace plus a residual term, both ≈ 1 for a typical training image), and
it is "far" above the threshold: the `quantile` of held-out in-distribution scores (default 99 %, so about 1 in
100 familiar images is flagged). Stored beside the run as `ood.safetensors`; applying it needs torch only.

A classifier trained on far more than its run saw (the photo run's ImageNet classifier) is better judged by its own
confidence: `ConfidenceDetector` scores 1 − the largest softmax probability of its logits (Hendrycks & Gimpel 2017),
with the threshold chosen the same way. (Feature densities fitted on a few hundred photos score flat synthetic
images as *more* typical than photos: measured in benchmarks/real_photos.py.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from vlfuse.atomic import atomic_write
from vlfuse.errors import CheckpointError

OOD_FILE = "ood.safetensors"


@dataclass(frozen=True)
class OODVerdict:
    """One input's out-of-distribution score against the run's threshold."""

    score: float
    threshold: float
    far: bool

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def _save(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Write a detector atomically (a half-written one never replaces a good one), readable by every user (the
    shipped runs' detectors live inside the package)."""

    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        tmp.chmod(0o644)

    atomic_write(path, write)


class _Thresholded:
    """A score per input (`score`) against `threshold`: the verdicts both detectors give."""

    threshold: float

    def score(self, inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def verdicts(self, inputs: Tensor) -> list[OODVerdict]:
        """Per input row its score, the threshold and whether it is far."""
        return [OODVerdict(round(float(s), 4), round(self.threshold, 4), bool(s > self.threshold))
                for s in self.score(inputs)]  # fmt: skip


class FeatureDensity(_Thresholded):
    """Principal-subspace Mahalanobis + residual score of (N, D) features; see the module docstring."""

    def __init__(self, mean: Tensor, directions: Tensor, spreads: Tensor, residual: float, threshold: float,
                 info: dict) -> None:  # fmt: skip
        self.mean = mean  # (D,)
        self.directions = directions  # (D, k) orthonormal columns
        self.spreads = spreads  # (k,) standard deviation along each direction
        self.residual = residual  # mean squared residual norm in training
        self.threshold = threshold
        self.info = info  # what it was fitted on: counts, quantile, feature source

    @classmethod
    def fit(cls, train: Tensor, held_out: Tensor, *, components: int = 32, quantile: float = 0.99,
            source: str = "") -> FeatureDensity:  # fmt: skip
        """Fit on `train` (N, D) features; the threshold is the `quantile` of the scores of `held_out` (M, D).

        Raises:
            ValueError: fewer than 2 training or 1 held-out feature(s), or a quantile outside (0, 1).
        """
        if len(train) < 2 or len(held_out) < 1:
            raise ValueError(f"an OOD detector needs ≥ 2 training and ≥ 1 held-out features, got {len(train)} and "
                             f"{len(held_out)}")  # fmt: skip
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        train = train.double()
        mean = train.mean(dim=0)  # (D,)
        centred = train - mean  # (N, D)
        k = max(1, min(components, len(train) - 1, train.shape[1]))
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(N, D), D)
        directions = vh[:k].T.contiguous()  # (D, k)
        spreads = (singular[:k] / (len(train) - 1) ** 0.5).clamp_min(1e-8)  # (k,)
        residual = ((centred - centred @ directions @ directions.T) ** 2).sum(dim=1).mean().clamp_min(1e-12)
        density = cls(mean.float(), directions.float(), spreads.float(), float(residual), float("inf"), {})
        held_scores = density.score(held_out)
        threshold = float(torch.quantile(held_scores.double(), quantile))
        info = {"train_features": len(train), "held_out_features": len(held_out), "components": k,
                "quantile": quantile, "source": source,
                "held_out_median": float(held_scores.median())}  # fmt: skip
        return cls(mean.float(), directions.float(), spreads.float(), float(residual), threshold, info)

    def score(self, features: Tensor) -> Tensor:
        """(N, D) features → (N,) scores (≈ 2 for a typical training image, larger farther away)."""
        centred = features.float() - self.mean  # (N, D)
        coords = centred @ self.directions  # (N, k)
        off = centred - coords @ self.directions.T  # (N, D)
        return ((coords / self.spreads) ** 2).mean(dim=1) + (off**2).sum(dim=1) / self.residual  # (N,)

    def save(self, path: Path) -> None:
        tensors = {"mean": self.mean.contiguous(), "directions": self.directions.contiguous(),
                   "spreads": self.spreads.contiguous()}  # fmt: skip
        meta = {"residual": repr(self.residual), "threshold": repr(self.threshold), "info": json.dumps(self.info)}
        _save(path, tensors, meta)


IMAGENET_HEAD = "efficientnet_lite0_imagenet"  # the inputs are EfficientNet-Lite0's pooled features: apply its head


@cache
def _imagenet_head() -> torch.nn.Module:
    from vlfuse.encoders.image.efficientnet_lite0 import load_efficientnet_lite0

    return load_efficientnet_lite0(224)._fc.eval()  # noqa: SLF001  Linear(1280, 1000)


class ConfidenceDetector(_Thresholded):
    """1 − max softmax probability of (N, K) logits, against a threshold from held-out in-distribution logits.

    With `head` = IMAGENET_HEAD the inputs are EfficientNet-Lite0's pooled (N, 1280) features, turned into ImageNet
    logits by the network's own classifier layer (from its package): a bridge over that frozen tower is judged by how
    sure the ImageNet classifier is about the image.
    """

    def __init__(self, threshold: float, info: dict, head: str | None = None) -> None:
        self.threshold = threshold
        self.info = info
        self.head = head

    @classmethod
    def fit(cls, held_out: Tensor, *, quantile: float = 0.99, source: str = "",
            head: str | None = None) -> ConfidenceDetector:  # fmt: skip
        if len(held_out) < 1 or not 0 < quantile < 1:
            raise ValueError(f"need ≥ 1 held-out logit row and a quantile in (0, 1); got {len(held_out)}, {quantile}")
        scores = cls(float("inf"), {}, head).score(held_out)
        info = {"train_features": 0, "held_out_features": len(held_out), "quantile": quantile, "source": source,
                "held_out_median": float(scores.median()), "kind": "confidence"}  # fmt: skip
        return cls(float(torch.quantile(scores.double(), quantile)), info, head)

    def score(self, logits: Tensor) -> Tensor:
        if self.head == IMAGENET_HEAD:
            with torch.no_grad():
                logits = _imagenet_head()(logits.float())  # (N, 1280) → (N, 1000)
        return 1.0 - logits.float().softmax(dim=-1).max(dim=-1).values  # (N,)

    def save(self, path: Path) -> None:
        _save(path, {"threshold": torch.tensor([self.threshold])},
              {"kind": "confidence", "head": self.head or "", "info": json.dumps(self.info)})


Detector = FeatureDensity | ConfidenceDetector


def load_detector(path: Path) -> Detector | None:
    """The detector saved at `path` (either kind), or None when the run has none.

    Raises:
        CheckpointError: the file exists but is unreadable.
    """
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            info = json.loads(meta.get("info", "{}"))
            if meta.get("kind") == "confidence":
                return ConfidenceDetector(float(fh.get_tensor("threshold")[0]), info, meta.get("head") or None)
            tensors = {k: fh.get_tensor(k) for k in ("mean", "directions", "spreads")}
        return FeatureDensity(tensors["mean"], tensors["directions"], tensors["spreads"], float(meta["residual"]),
                              float(meta["threshold"]), info)  # fmt: skip
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise CheckpointError(f"OOD detector '{path}' is unreadable ({err}); refit it with `vlfuse ood RUN`") from None


def far_warning(source: str, verdict: OODVerdict, model: str) -> str:
    """The warning shown for an input that is far from the model's training data."""
    return (f"{source} looks unlike the images {model} was trained on (out-of-distribution score {verdict.score:.1f} "
            f"> threshold {verdict.threshold:.1f}); its output may be meaningless")  # fmt: skip
