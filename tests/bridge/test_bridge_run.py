"""A bridge trained end to end on real easy-VQA rows (tiny budget, two stages), reloaded, and used through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from vlfuse.bridge.generate import GenerationConfig
from vlfuse.task import load_run


@pytest.fixture(scope="module")
def bridge_run(trained_runs):
    """The tiny two-stage bridge of `tiny_configs.TINY_BRIDGE`, trained through the CLI (interrupted, resumed)."""
    return trained_runs("bridge")[1]


def test_run_directory_holds_small_weights_metrics_and_report(bridge_run):
    assert (bridge_run / "bridge.safetensors").stat().st_size < 5_000_000  # projector + adapters only (LM: 540 MB)
    metrics = json.loads((bridge_run / "metrics.json").read_text())
    assert metrics["test"]["vqa"]["samples"] == 4 and 0 <= metrics["test"]["vqa"]["exact_match"] <= 1
    assert {"bleu4", "cider", "rouge_l", "accuracy"} <= set(metrics["test"]["caption"])
    assert [s["objective"] for s in metrics["stages"]] == ["caption", "mixed"]
    assert (bridge_run / "report.md").read_text().count("|") > 10
    assert (bridge_run / "plots" / "samples.png").stat().st_size > 1000
    for stage in ("0-caption", "1-mixed"):
        assert (bridge_run / "stages" / stage / "done.json").is_file()


def test_reloaded_bridge_generates_deterministically(bridge_run):
    from easy_vqa import get_test_image_paths

    bridge = load_run(bridge_run)
    images = bridge.load_images([get_test_image_paths()[0], get_test_image_paths()[1]])
    greedy = GenerationConfig(max_new_tokens=4)
    first = bridge.ask(images, ["what color is the shape?", "what shape is in the image?"], greedy)
    assert first == bridge.ask(images, ["what color is the shape?", "what shape is in the image?"], greedy)
    pieces: list[tuple[int, str]] = []
    captions = bridge.caption(images[:1], greedy, on_text=lambda row, piece: pieces.append((row, piece)))
    assert "".join(p for _, p in pieces).strip() == captions[0]  # streamed text adds up to the answer


def test_cli_caption(bridge_run, cli):  # (`vlfuse ask` is tested for every task in tests/test_tasks.py)
    from easy_vqa import get_test_image_paths

    image = get_test_image_paths()[0]
    captioned = cli("caption", str(bridge_run), image, "--json", "--max-new-tokens", "4")
    assert captioned.returncode == 0, captioned.stderr[-2000:]
    assert json.loads(captioned.stdout.strip().splitlines()[-1])["image"] == image


def test_clear_errors_for_a_wrong_run_and_a_bad_image(bridge_run, tmp_path, cli):
    missing = cli("ask", str(tmp_path / "nope"), "x.png", "what?")
    assert missing.returncode == 2 and "neither a run directory" in " ".join(missing.stderr.split())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    broken = cli("caption", str(bridge_run), str(bad))
    assert broken.returncode == 2 and "bad.png" in broken.stderr


def test_cli_evaluate_rescores_chosen_objectives_and_keeps_the_rest(bridge_run, cli):
    before = json.loads((bridge_run / "metrics.json").read_text())
    for stage in before["stages"]:  # as a run trained before the task registry wrote it (the shipped one did)
        stage["task"] = stage.pop("objective")
    (bridge_run / "metrics.json").write_text(json.dumps(before))
    done = cli("evaluate", str(bridge_run), "--objectives", "caption", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    after = json.loads((bridge_run / "metrics.json").read_text())
    assert after["test"]["vqa"] == before["test"]["vqa"]  # not re-scored
    assert after["train_seconds"] == before["train_seconds"]
    assert {"bleu4", "cider", "rouge_l", "accuracy", "samples"} <= set(after["test"]["caption"])
    assert json.loads(done.stdout)["caption"]["samples"] == after["test"]["caption"]["samples"]
    wrong = cli("evaluate", str(bridge_run), "--objectives", "vqa,poems")
    assert wrong.returncode != 0 and "poems" in wrong.stderr


def test_the_bridge_trains_on_the_configured_device(tmp_path):
    """`train.device` reaches the bridge (it was always the CPU): asking for CUDA on a machine without it is refused
    before anything is loaded, naming the setting."""
    from tiny_configs import TINY_CONFIGS

    from vlfuse.errors import ConfigError
    from vlfuse.task import validate_config
    from vlfuse.train.runner import run_training

    raw = {**TINY_CONFIGS["bridge"], "train": {**TINY_CONFIGS["bridge"]["train"], "device": "cuda:0"}}
    cfg = validate_config(raw)
    assert {stage.train.device for stage in cfg.stages} == {"cuda:0"}  # the stages inherit the run's train section
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be shown here")
    with pytest.raises(ConfigError, match=r"train\.device=cuda:0 but CUDA is not available"):
        run_training(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"stages\.1\.train\.device: set it once, in the top-level train section"):
        validate_config({**raw, "stages": [raw["stages"][0], {**raw["stages"][1], "train": {"device": "cpu"}}]})
