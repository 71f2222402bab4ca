"""The server's default backend, `auto`: ONNX exported on first start from the run's current weights and verified,
reused while the weights stay the same, redone when they change; PyTorch, with the reason, when no export can be
made."""

import json
import shutil

import torch
from live_server import easy_vqa_image

from vlfuse.api import load_run
from vlfuse.data.images import load_image
from vlfuse.serve import load_predictor
from vlfuse.train.checkpoint import save_model_weights


def inputs(run):
    image = load_image(easy_vqa_image(0), size=run.cfg.data.image_size, channels=run.cfg.data.channels)
    return [image, image, None], ["what color is the shape?", None, "is there a circle?"]


def test_auto_exports_on_first_start_and_matches_pytorch(tiny_run_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run_dir, ignore=shutil.ignore_patterns("onnx"))
    predictor = load_predictor(run_dir)  # the default backend
    assert predictor.backend == "onnx" and "exported on first start" in predictor.describe()["backend_why"]
    meta = json.loads((run_dir / "onnx" / "preprocess.json").read_text())
    assert len(meta["source_weights_sha256"]) == 64
    run = load_run(run_dir)
    images, texts = inputs(run)
    assert torch.allclose(predictor.predict_proba(images, texts), run.predict_proba(images, texts), atol=1e-5)

    graph = run_dir / "onnx" / "model.onnx"
    written = graph.stat().st_mtime_ns
    again = load_predictor(run_dir)
    assert again.backend == "onnx" and "matches the run's weights" in again.describe()["backend_why"]
    assert graph.stat().st_mtime_ns == written  # reused, not exported again

    with torch.no_grad():  # new weights (as after more training): the old export is stale
        next(p for p in run.model.parameters() if p.dim() == 2).mul_(0.5)
    save_model_weights(run.model, run_dir / "model.safetensors")
    renewed = load_predictor(run_dir)
    assert "exported on first start" in renewed.describe()["backend_why"]
    changed = load_run(run_dir)
    assert torch.allclose(renewed.predict_proba(images, texts), changed.predict_proba(images, texts), atol=1e-5)
    assert not torch.allclose(renewed.predict_proba(images, texts), predictor.predict_proba(images, texts), atol=1e-3)


def test_auto_falls_back_to_pytorch_and_says_why(tiny_run_dir, trained_runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run_dir, ignore=shutil.ignore_patterns("onnx"))
    (run_dir / "onnx").write_text("a file where the export folder would go")  # the export cannot be written
    predictor = load_predictor(run_dir)
    assert predictor.backend == "torch" and "ONNX export failed" in predictor.describe()["backend_why"]
    assert (run_dir / "onnx").read_text().startswith("a file")  # nothing of the user's overwritten

    moderation = load_predictor(trained_runs("moderate")[0])  # calibrated; its task has no ONNX export
    assert moderation.backend == "torch"
    assert "'moderate' runs have no ONNX export" in moderation.describe()["backend_why"]
