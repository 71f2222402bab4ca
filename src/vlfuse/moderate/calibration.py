"""Calibration of per-label scores: fit on validation logits (temperature scaling per label, Guo et al. 2017; or
isotonic regression), apply to new logits. Applying needs only numpy: the inference path loads the fitted numbers
from moderation.json; fitting imports torch (temperature) or scikit-learn (isotonic)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vlfuse.config import Section

METHODS = ("temperature", "isotonic", "none")


class CalibrationConfig(Section):
    method: Literal["temperature", "isotonic", "none"] = "temperature"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass
class Calibrator:
    """Per-label maps from logits (N, K) to calibrated probabilities (N, K)."""

    method: str
    temperature: list[float] = field(default_factory=list)  # per label (method "temperature")
    knots: list[tuple[list[float], list[float]]] = field(default_factory=list)  # per label (x logits, y probs)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float64)  # (N, K)
        if self.method == "none":
            return sigmoid(logits)
        if self.method == "temperature":
            return sigmoid(logits / np.asarray(self.temperature)[None, :])
        out = np.empty_like(logits)
        for k, (x, y) in enumerate(self.knots):
            out[:, k] = np.interp(logits[:, k], x, y)  # what sklearn's IsotonicRegression.predict does (clipped)
        return out

    def as_dict(self) -> dict[str, Any]:
        knots = [[list(x), list(y)] for x, y in self.knots]
        return {"method": self.method, "temperature": self.temperature, "knots": knots}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibrator:
        return cls(raw["method"], list(raw.get("temperature") or []), [tuple(k) for k in raw.get("knots") or []])


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the binary cross-entropy of sigmoid(logit / T) (one label)."""
    import torch
    import torch.nn.functional as F

    z = torch.as_tensor(logits, dtype=torch.float64)  # (N,)
    y = torch.as_tensor(labels, dtype=torch.float64)  # (N,)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def fit_isotonic(logits: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    """An increasing logit → probability map (one label), as the knots of a piecewise-linear function."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(logits, labels)
    return iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()


def fit_calibrator(method: str, logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Fit per-label calibration on validation logits (N, K) and 0/1 labels (N, K)."""
    k = logits.shape[1]
    if method == "temperature":
        return Calibrator(method, temperature=[fit_temperature(logits[:, j], labels[:, j]) for j in range(k)])
    if method == "isotonic":
        return Calibrator(method, knots=[fit_isotonic(logits[:, j], labels[:, j]) for j in range(k)])
    return Calibrator("none")
