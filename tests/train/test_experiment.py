"""End-to-end training on a tiny easy-VQA subset: run directory contents, early stopping, skipped rows, no accidental
overwrite (exact resume: tests/test_tasks.py, for every task)."""

import json

import pytest

from vlfuse.task import validate_config
from vlfuse.train.runner import run_training


def _final(run_dir):
    return json.loads((run_dir / "test_metrics.json").read_text())


def test_run_directory_has_everything(trained_runs):
    run = trained_runs("classify")[1]  # the tiny config through the CLI, interrupted after epoch 1 and resumed
    assert json.loads((run / "run.json").read_text())["complete"]
    for name in (
        "config.yaml",
        "labels.json",
        "tokenizer.json",
        "model.safetensors",
        "checkpoints/last.safetensors",
        "metrics.jsonl",
        "test_metrics.json",
        "report.md",
        "plots/learning_curves.png",
        "plots/confusion_test.png",
        "run.json",
        "data_issues.json",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(r["train_samples_per_s"] > 0 and "val_accuracy" in r for r in lines)
    report = (run / "report.md").read_text()
    assert "plots/confusion_test.png" in report and "No rows were skipped" in report
    assert 0.0 <= _final(run)["test"]["accuracy"] <= 1.0


def test_early_stopping_stops(tmp_path, tiny_config):
    tiny_config["train"].update(epochs=6, early_stopping_patience=1, lr=1e-9, warmup_fraction=0.0)
    summary = run_training(validate_config(tiny_config), tmp_path / "run")
    assert summary["stopped_early"] and summary["epochs"] < 6


def test_skipped_rows_are_listed_in_report(tmp_path, tiny_table):
    cfg = validate_config(tiny_table(bad_rows=True))
    summary = run_training(cfg, tmp_path / "run")
    assert summary["complete"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "row(s) were skipped" in report and "missing.png" in report
    issues = json.loads((tmp_path / "run" / "data_issues.json").read_text())
    assert len(issues) == 2


def test_existing_run_is_not_overwritten_by_accident(tmp_path, tiny_config):
    from vlfuse.errors import CheckpointError

    tiny_config["train"]["epochs"] = 1
    cfg = validate_config(tiny_config)
    run_training(cfg, tmp_path / "run")
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run.*--resume.*--overwrite"):
        run_training(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    run_training(cfg, tmp_path / "run", overwrite=True)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
