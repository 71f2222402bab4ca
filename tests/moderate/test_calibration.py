"""Calibration makes a deliberately over-confident model honest (temperature and isotonic), measured with ECE."""

from __future__ import annotations

import numpy as np
import pytest

from vlfuse.moderate.calibration import Calibrator, fit_calibrator, sigmoid
from vlfuse.moderate.measure import calibration_errors


def overconfident(n: int, seed: int, factor: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z) but logits reported as factor·z: right ranking, far too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, size=(n, 2))  # (N, K=2)
    labels = (rng.random((n, 2)) < sigmoid(z)).astype(float)
    return factor * z, labels


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_calibration_lowers_ece_of_an_overconfident_model(method):
    val_logits, val_labels = overconfident(20_000, 0)
    test_logits, test_labels = overconfident(20_000, 1)
    calibrator = fit_calibrator(method, val_logits, val_labels)
    for k in range(2):
        before = calibration_errors(sigmoid(test_logits[:, k]), test_labels[:, k])
        after = calibration_errors(calibrator(test_logits)[:, k], test_labels[:, k])
        assert before["ece"] > 0.08  # the model really is over-confident
        assert after["ece"] < 0.02 and after["ece"] < before["ece"] / 4
        assert after["brier"] < before["brier"]


def test_temperature_recovers_the_overconfidence_factor():
    logits, labels = overconfident(50_000, 2, factor=3.0)
    calibrator = fit_calibrator("temperature", logits, labels)
    assert calibrator.temperature == pytest.approx([3.0, 3.0], rel=0.05)


def test_a_calibrator_survives_its_json_form():
    logits, labels = overconfident(2_000, 3)
    for method in ("temperature", "isotonic", "none"):
        calibrator = fit_calibrator(method, logits, labels)
        again = Calibrator.from_dict(calibrator.as_dict())
        np.testing.assert_allclose(again(logits), calibrator(logits))
        assert again(logits).min() >= 0 and again(logits).max() <= 1
