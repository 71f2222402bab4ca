"""Every registered task through the one front door: its tiny config trained by the Python API (uninterrupted) and by
the CLI (interrupted after one epoch, then `--resume`d) gives the same metrics and weights; the run loads with
`vlfuse.load_run`, evaluates and answers (predict / ask / search) through the CLI and the API alike; an operation the
task does not support is a one-line error naming what it does support.

A new task is covered here once it has an entry in `tiny_configs.TINY_CONFIGS` and in `USE` below (a test fails
until it does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_configs import TINY_CONFIGS

import vlfuse
from vlfuse.errors import DataError
from vlfuse.task import TASKS, resolve_run

OPERATIONS = ("predict", "export", "robustness", "ask", "caption", "index", "search", "zeroshot")


def quality(metrics: dict) -> dict:
    """Metrics without the timings (which differ between two runs of the same training)."""
    return {k: quality(v) if isinstance(v, dict) else v for k, v in metrics.items() if not k.endswith("_seconds")}


def same(a, b) -> bool:
    """Equal structure and equal values, floats to 1e-5 (a fresh process may sum in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-7)
    return a == b


def history(log: Path) -> list[dict]:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in rows]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}:{k}": v for f in sorted(run_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_every_task_has_a_tiny_config_and_a_use():
    assert set(TINY_CONFIGS) == set(TASKS) == set(USE)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_interrupted_and_resumed_equals_uninterrupted(task, trained_runs):
    whole, resumed = trained_runs(task)
    assert resolve_run(resumed).task.name == task  # recorded once, in config.yaml
    a, b = vlfuse.load_run(whole), vlfuse.load_run(resumed)
    assert type(a) is type(b) is TASKS[task].run_class and a.task == task
    assert quality(a.metrics) == quality(b.metrics) and a.metrics
    wa, wb = weights(whole), weights(resumed)
    assert wa.keys() == wb.keys() and wa
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    summary = json.loads((resumed / "run.json").read_text())
    assert summary["task"] == task and summary["complete"]
    logs = sorted(p.relative_to(whole) for p in whole.rglob("metrics.jsonl"))
    assert bool(logs) or not TASKS[task].training_class.trains  # a task that trains nothing logs no epoch
    assert logs == sorted(p.relative_to(resumed) for p in resumed.rglob("metrics.jsonl"))
    for log in logs:  # every epoch logged once, with the same numbers (timings aside)
        assert history(whole / log) == history(resumed / log)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_evaluate_through_the_cli_and_the_api(task, trained_runs, cli):
    _, run_dir = trained_runs(task)
    from_api = vlfuse.evaluate(run_dir, "test")
    done = cli("evaluate", str(run_dir), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert same(quality(json.loads(done.stdout)), quality(from_api)) and from_api


def _use_classify(run_dir: Path, cli, image: str) -> None:
    run = vlfuse.load_run(run_dir)
    question = "what color is the shape?"
    top = run.predict(image=image, text=question, top_k=3)
    done = cli("predict", str(run_dir), "--image", image, "--text", question, "--top-k", "3", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout)
    assert [p["label"] for p in shown] == [p.label for p in top] and len(top) == 3
    assert [p["probability"] for p in shown] == pytest.approx([p.probability for p in top], abs=1e-6)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="top_k must be an integer of at least 1"):
            run.predict(image=image, text=question, top_k=bad)


def _use_retrieval(run_dir: Path, cli, image: str) -> None:
    from vlfuse.retrieval.search import search

    index = run_dir.parent / "test.index"
    built = cli("index", str(run_dir), "easy-vqa:test", "-o", str(index))
    assert built.returncode == 0, built.stderr[-3000:]
    hits = search(vlfuse.load_run(run_dir), index, "a red circle", k=3).hits
    done = cli("search", str(run_dir), str(index), "a red circle", "-k", "3", "--json",
               "--sheet", str(run_dir.parent / "sheet.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [h["source"] for h in json.loads(done.stdout)] == [h.source for h in hits] and len(hits) == 3


def _use_bridge(run_dir: Path, cli, image: str) -> None:
    bridge = vlfuse.load_run(run_dir)
    answer = bridge.ask(bridge.load_images([image]), ["what color is the shape?"])[0]
    done = cli("ask", str(run_dir), image, "what color is the shape?", "--no-stream")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == answer
    for empty in ("", "   ", "\x00\x00", "\t\n"):
        with pytest.raises(DataError, match="the question is empty"):
            bridge.ask(bridge.load_images([image]), [empty])
    refused = cli("ask", str(run_dir), image, " ", "--no-stream")
    assert refused.returncode == 2 and "the question is empty" in refused.stderr, refused.stderr[-3000:]


def _use_moderate(run_dir: Path, cli, image: str) -> None:
    run = vlfuse.load_run(run_dir)
    text = "authentic sneaker, no idiots"
    top = run.predict(image=image, text=text, top_k=3)
    done = cli("predict", str(run_dir), "--image", image, "--text", text, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p["probability"] for p in json.loads(done.stdout)] == pytest.approx([p.probability for p in top], abs=1e-6)
    verdict = run.moderate([image], [text])[0]
    assert {label: v.probability for label, v in verdict.labels.items()} == pytest.approx(
        {p.label: p.probability for p in top})  # predict shows the calibrated probabilities the decisions use
    out = run_dir.parent / "decisions.jsonl"
    scanned = cli("moderate", str(run_dir), "marketplace:test", "--limit", "40", "--out", str(out))
    assert scanned.returncode == 0, scanned.stderr[-3000:]
    assert [json.loads(line)["item"] for line in out.read_text().splitlines()] == list(range(40))


def _use_photo(run_dir: Path, cli, image: str) -> None:
    from vlfuse.retrieval.search import zeroshot

    labels = ["circle", "dog", "car"]
    result = zeroshot(vlfuse.load_run(run_dir), labels=labels, images=[image])
    done = cli("zeroshot", str(run_dir), image, "--labels", ",".join(labels), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout)
    assert [p[1] for p in shown["predictions"]] == [p[1] for p in result.predictions] and shown["labels"] == labels
    assert shown["ood"] == [None]  # the tiny run has no detector (tests/photo covers the shipped one's)


def _use_video(run_dir: Path, cli, image: str) -> None:
    """A clip of the run's own test data written as an mp4 and as a folder of PNG frames: the API and the CLI give
    the same answer; an image where a clip is expected is a clear error."""
    from PIL import Image

    from vlfuse.data.video import write_video

    run = vlfuse.load_run(run_dir)
    test = run.split_data("test")
    frames = test.images[test.image_index[0]].permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
    clip, folder = run_dir.parent / "clip.mp4", run_dir.parent / "frames"
    write_video(clip, frames, fps=5)
    folder.mkdir(exist_ok=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{k:03d}.png")
    question = test.texts[0]
    for source in (clip, folder):
        top = run.predict(video=source, text=question, top_k=3)
        done = cli("predict", str(run_dir), "--video", str(source), "--text", question, "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        shown = json.loads(done.stdout)
        assert [p["label"] for p in shown] == [p.label for p in top] and len(top) == 3
        assert [p["probability"] for p in shown] == pytest.approx([p.probability for p in top], abs=1e-5)
    with pytest.raises(ValueError, match="video run"):
        run.predict(image=image, text=question)


USE = {"classify": _use_classify, "retrieval": _use_retrieval, "bridge": _use_bridge, "moderate": _use_moderate,
       "photo": _use_photo, "video": _use_video}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_run_answers_through_the_cli_and_the_api(task, trained_runs, cli):
    from easy_vqa import get_test_image_paths

    USE[task](trained_runs(task)[1], cli, get_test_image_paths()[0])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_an_unsupported_operation_names_the_task_and_what_it_supports(task, trained_runs, cli):
    run_dir = str(trained_runs(task)[1])
    info = TASKS[task]
    operation = next(op for op in OPERATIONS if not info.supports(op))
    args = {
        "predict": ["predict", run_dir, "--text", "what?"], "export": ["export", run_dir],
        "ask": ["ask", run_dir, "x.png", "what?"], "index": ["index", run_dir, "easy-vqa:test"],
    }[operation]  # fmt: skip
    done = cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    message = " ".join(done.stderr.split())
    assert f"'{task}' run" in message and f"'{operation}'" in message and ", ".join(info.operations) in message
