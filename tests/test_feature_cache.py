"""The on-disk feature cache of frozen image towers: reuse, invalidation, and training on cached features."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from tiny_configs import TINY_VQA

import vlfuse.features as features
from vlfuse.config import DataConfig
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.model import MultimodalModel
from vlfuse.registry import IMAGE_ENCODERS
from vlfuse.task import validate_config
from vlfuse.train.runner import run_training


def encoder(**overrides):
    cfg = IMAGE_ENCODERS.parse({"name": "efficientnet_lite0", "resolution": 32, **overrides}, "test")
    return IMAGE_ENCODERS.build(cfg, in_channels=3, image_size=16)


def test_features_are_computed_once_then_read_and_any_change_invalidates(tmp_path, monkeypatch):
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    enc, prep = encoder(), ImagePreprocessor(DataConfig(image_size=16), augment=False)
    first = features.cached_features(enc, images, prep, folder=tmp_path)
    assert first.tokens.shape == (5, 1, 1280) and len(list(tmp_path.iterdir())) == 1
    calls = []
    real = features.compute_features
    monkeypatch.setattr(features, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = features.cached_features(enc, images, prep, folder=tmp_path)
    assert calls == [] and torch.equal(again.tokens, first.tokens)  # read back, not recomputed
    other_norm = ImagePreprocessor(DataConfig(image_size=16, mean=[0.4] * 3, std=[0.3] * 3), augment=False)
    changed_pixels = images.clone()
    changed_pixels[0, 0, 0, 0] ^= 1
    for enc_, imgs, prep_ in (
        (enc, images, other_norm),
        (enc, changed_pixels, prep),
        (encoder(taps=[3]), images, prep),
    ):
        features.cached_features(enc_, imgs, prep_, folder=tmp_path)
    assert len(calls) == 3 and len(list(tmp_path.iterdir())) == 4  # preprocessing, pixels, encoder config: new keys
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_training_with_a_frozen_tower_reads_cached_features(tmp_path, monkeypatch):
    monkeypatch.setenv("VLFUSE_CACHE", str(tmp_path / "cache"))
    cfg = copy.deepcopy(TINY_VQA)
    cfg["model"]["image_encoder"] = {"name": "efficientnet_lite0", "resolution": 32}
    cfg["model"]["modality_dropout"] = 0.2
    cfg["train"]["epochs"] = 2
    calls = []
    real = features.compute_features
    monkeypatch.setattr(features, "compute_features", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    seen = []
    real_forward = MultimodalModel.forward
    monkeypatch.setattr(
        MultimodalModel, "forward", lambda self, b: seen.append(b.image is None) or real_forward(self, b)
    )
    run_training(validate_config(cfg), tmp_path / "run")
    assert len(calls) == 3  # train / val / test features computed once each
    assert seen and all(seen)  # every training and evaluation batch carried cached features, never pixels
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 3


def test_a_video_run_with_a_frozen_frame_tower_trains_on_cached_frame_features(tmp_path, monkeypatch):
    """Every stored frame of every clip is encoded once (train / val / test), batches carry (U, F, N, D) frame
    features instead of pixels, and the trained run predicts the same from pixels as from its cached features."""
    from tiny_configs import TINY_VIDEO

    import vlfuse
    from vlfuse.classify.evaluate import predict_logits
    from vlfuse.data.transforms import VideoPreprocessor
    from vlfuse.video.task import attach_cached_frame_features

    monkeypatch.setenv("VLFUSE_CACHE", str(tmp_path / "cache"))
    cfg = copy.deepcopy(TINY_VIDEO)
    cfg["model"]["image_encoder"] = {"name": "efficientnet_lite0", "resolution": 32}
    cfg["train"]["epochs"] = 1
    calls = []
    real = features.compute_features
    monkeypatch.setattr(features, "compute_features", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    seen = []
    real_forward = MultimodalModel.forward
    monkeypatch.setattr(
        MultimodalModel, "forward", lambda self, b: seen.append(b.image_tokens is not None and b.image_tokens.ndim == 4)
        or real_forward(self, b)
    )  # fmt: skip
    run_training(validate_config(cfg), tmp_path / "run")
    assert len(calls) == 3 and all(shape[1:] == (3, 16, 16) for shape in calls)  # frames of train / val / test clips
    assert seen and all(seen)  # every batch carried cached frame features, never pixels
    monkeypatch.setattr(MultimodalModel, "forward", real_forward)
    run = vlfuse.load_run(tmp_path / "run")
    test = run.split_data("test")
    preprocess = VideoPreprocessor(run.cfg.data, augment=False)
    from_pixels = predict_logits(run.model, test, preprocess, batch_size=64, device="cpu")  # (N, K)
    attach_cached_frame_features(run.cfg, run.model, SimpleNamespace(train=None, val=None, test=test))
    from_cache = predict_logits(run.model, test, preprocess, batch_size=64, device="cpu")  # (N, K)
    assert test.image_features is not None and torch.allclose(from_pixels, from_cache, atol=1e-4)
