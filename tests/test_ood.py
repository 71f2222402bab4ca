"""Out-of-distribution detectors: a feature density flags points far from its training cloud at the promised rate,
the confidence detector flags unconfident logits, both round-trip through their file, and an unreadable file is a
clear error."""

import pytest
import torch

from vlfuse.errors import CheckpointError
from vlfuse.ood import ConfidenceDetector, FeatureDensity, load_detector


def cloud(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(64, 8, generator=torch.Generator().manual_seed(99))  # the training data's 8-d subspace
    return torch.randn(n, 8, generator=g) @ basis.T + 0.05 * torch.randn(n, 64, generator=g) + shift  # (n, 64)


def test_feature_density_flags_far_points_and_about_one_in_a_hundred_familiar_ones(tmp_path):
    density = FeatureDensity.fit(cloud(2000, 0), cloud(1000, 1), components=8, quantile=0.99)
    familiar = density.verdicts(cloud(4000, 2))
    rate = sum(v.far for v in familiar) / len(familiar)
    assert 0.0 < rate < 0.03
    far = density.verdicts(cloud(200, 3, shift=3.0))
    assert all(v.far for v in far)
    off_plane = density.verdicts(torch.randn(200, 64, generator=torch.Generator().manual_seed(4)))
    assert sum(v.far for v in off_plane) >= 195  # off the training subspace: the residual term
    density.save(tmp_path / "ood.safetensors")
    again = load_detector(tmp_path / "ood.safetensors")
    assert isinstance(again, FeatureDensity) and again.threshold == pytest.approx(density.threshold)
    probe = cloud(5, 5, shift=1.0)
    assert torch.allclose(again.score(probe), density.score(probe))


def test_confidence_detector_flags_unconfident_logits(tmp_path):
    confident = torch.zeros(100, 10)
    confident[:, 0] = torch.linspace(4, 8, 100)
    detector = ConfidenceDetector.fit(confident, quantile=0.99)
    assert not detector.verdicts(torch.tensor([[9.0] + [0.0] * 9]))[0].far
    assert detector.verdicts(torch.zeros(1, 10))[0].far  # uniform: 1 − 0.1
    detector.save(tmp_path / "ood.safetensors")
    again = load_detector(tmp_path / "ood.safetensors")
    assert isinstance(again, ConfidenceDetector) and again.threshold == pytest.approx(detector.threshold)


def test_no_file_is_no_detector_and_a_broken_file_is_a_clear_error(tmp_path):
    assert load_detector(tmp_path / "ood.safetensors") is None
    (tmp_path / "ood.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable.*vlfuse ood RUN"):
        load_detector(tmp_path / "ood.safetensors")
    with pytest.raises(ValueError, match="quantile"):
        FeatureDensity.fit(cloud(10, 0), cloud(5, 1), quantile=1.5)
