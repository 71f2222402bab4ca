"""A bridge trained end to end on real easy-VQA rows (tiny budget), reloaded, and used through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from vlfuse.bridge.generate import GenerationConfig
from vlfuse.bridge.run import BridgeRun

TINY_BRIDGE = {
    "task": "bridge",
    "data": {"name": "easy-vqa", "image_size": 32},
    "image_encoder": {"name": "efficientnet_lite0", "frozen": True, "resolution": 32},
    "bridge": {"projector": {"kind": "linear"}, "lora": {"rank": 2}},
    "stages": [
        {"task": "caption", "rows_per_epoch": 8, "train": {"epochs": 1, "batch_size": 4, "lr": 0.002}},
        {"task": "mixed", "rows_per_epoch": 8, "train": {"epochs": 1, "batch_size": 4, "lr": 0.001}},
    ],
    "generation": {"max_new_tokens": 4},
    "eval": {"val_rows": 4, "test_questions": 4, "test_captions": 4, "batch_size": 4},
}


def vlfuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlfuse.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bridge_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bridge")
    config = folder / "bridge.yaml"
    config.write_text(yaml.safe_dump(TINY_BRIDGE))
    done = vlfuse("train", str(config), "--run-dir", str(folder / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test vqa:" in done.stdout and "test caption:" in done.stdout
    return folder / "run"


def test_run_directory_holds_small_weights_metrics_and_report(bridge_run):
    assert (bridge_run / "bridge.safetensors").stat().st_size < 5_000_000  # projector + adapters only (LM: 540 MB)
    metrics = json.loads((bridge_run / "metrics.json").read_text())
    assert metrics["test"]["vqa"]["samples"] == 4 and 0 <= metrics["test"]["vqa"]["exact_match"] <= 1
    assert {"bleu4", "cider", "rouge_l", "accuracy"} <= set(metrics["test"]["caption"])
    assert [s["task"] for s in metrics["stages"]] == ["caption", "mixed"]
    assert (bridge_run / "report.md").read_text().count("|") > 10
    assert (bridge_run / "plots" / "samples.png").stat().st_size > 1000
    for stage in ("0-caption", "1-mixed"):
        assert (bridge_run / "stages" / stage / "done.json").is_file()


def test_reloaded_bridge_generates_deterministically(bridge_run):
    from easy_vqa import get_test_image_paths

    bridge = BridgeRun.load(bridge_run)
    images = bridge.load_images([get_test_image_paths()[0], get_test_image_paths()[1]])
    greedy = GenerationConfig(max_new_tokens=4)
    first = bridge.ask(images, ["what color is the shape?", "what shape is in the image?"], greedy)
    assert first == bridge.ask(images, ["what color is the shape?", "what shape is in the image?"], greedy)
    pieces: list[tuple[int, str]] = []
    captions = bridge.caption(images[:1], greedy, on_text=lambda row, piece: pieces.append((row, piece)))
    assert "".join(p for _, p in pieces).strip() == captions[0]  # streamed text adds up to the answer


def test_cli_ask_and_caption(bridge_run):
    from easy_vqa import get_test_image_paths

    image = get_test_image_paths()[0]
    asked = vlfuse("ask", str(bridge_run), image, "what color is the shape?", "--max-new-tokens", "4")
    assert asked.returncode == 0, asked.stderr[-2000:]
    captioned = vlfuse("caption", str(bridge_run), image, "--json", "--max-new-tokens", "4")
    assert captioned.returncode == 0, captioned.stderr[-2000:]
    assert json.loads(captioned.stdout.strip().splitlines()[-1])["image"] == image


def test_clear_errors_for_a_wrong_run_and_a_bad_image(bridge_run, tmp_path):
    missing = vlfuse("ask", str(tmp_path / "nope"), "x.png", "what?")
    assert missing.returncode == 2 and "neither a bridge run directory" in missing.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    broken = vlfuse("caption", str(bridge_run), str(bad))
    assert broken.returncode == 2 and "bad.png" in broken.stderr


def test_cli_evaluate_rescores_chosen_tasks_and_keeps_the_rest(bridge_run):
    before = json.loads((bridge_run / "metrics.json").read_text())
    done = vlfuse("evaluate", str(bridge_run), "--tasks", "caption", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    after = json.loads((bridge_run / "metrics.json").read_text())
    assert after["test"]["vqa"] == before["test"]["vqa"]  # not re-scored
    assert after["train_seconds"] == before["train_seconds"]
    assert {"bleu4", "cider", "rouge_l", "accuracy", "samples"} <= set(after["test"]["caption"])
    assert json.loads(done.stdout)["caption"]["samples"] == after["test"]["caption"]["samples"]
    wrong = vlfuse("evaluate", str(bridge_run), "--tasks", "vqa,poems")
    assert wrong.returncode != 0 and "poems" in wrong.stderr
