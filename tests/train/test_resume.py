"""Resume without dead ends: runs killed before their first checkpoint, during a checkpoint write, or between the
checkpoint and the log line all finish with every epoch logged once and the same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlfuse.task import validate_config
from vlfuse.train import checkpoint as ckpt
from vlfuse.train.runner import run_training
from vlfuse.train.trainer import LAST_CHECKPOINT


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _epochs_logged(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _test_metrics(run: Path) -> dict:
    return json.loads((run / "test_metrics.json").read_text())["test"]


def _config(tiny_config, epochs: int):
    tiny_config["train"]["epochs"] = epochs
    return validate_config(tiny_config)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_beginning(tmp_path, tiny_config, caplog):
    cfg = _config(tiny_config, 2)
    reference = tmp_path / "reference"
    run_training(cfg, reference)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epochs=1)
    for name in ("checkpoints", "model.safetensors", "tokenizer.json", "labels.json"):  # as if killed early
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    summary = run_training(cfg, run, resume=True)
    assert summary["complete"] and "training it from the beginning" in caplog.text
    assert _epochs_logged(run) == [1, 2]
    assert _test_metrics(run) == _test_metrics(reference)
    assert (run / "tokenizer.json").is_file() and (run / "labels.json").is_file()


def test_the_log_is_rewritten_from_the_checkpoint_after_a_kill_between_them(tmp_path, tiny_config):
    cfg = _config(tiny_config, 2)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epochs=1)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "trunc')  # the line of epoch 1 lost, half a line written
    run_training(cfg, run, resume=True)
    assert _epochs_logged(run) == [1, 2]


def test_a_complete_checkpoint_left_under_its_temporary_name_is_used(tmp_path, tiny_config):
    cfg = _config(tiny_config, 3)
    reference = tmp_path / "reference"
    run_training(cfg, reference)
    run = tmp_path / "run"
    run_training(cfg, run, stop_after_epochs=1)
    last = run / LAST_CHECKPOINT
    epoch_one = last.read_bytes()
    run_training(cfg, run, resume=True, stop_after_epochs=1)
    # killed after the epoch-2 checkpoint was written in full but before it was moved into place (and logged)
    last.rename(last.with_name(f".last.safetensors.tmp-{_dead_pid()}"))
    last.write_bytes(epoch_one)
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    run_training(cfg, run, resume=True)
    assert _epochs_logged(run) == [1, 2, 3]
    assert _test_metrics(run) == _test_metrics(reference)
    assert not list(run.rglob(".*.tmp-*"))


def test_recovery_removes_half_written_files_and_leaves_live_writers_alone(tmp_path):
    good = tmp_path / "checkpoints" / "last.safetensors"
    ckpt.atomic_save_tensors({"w": torch.ones(100)}, good)
    half = good.with_name(f".last.safetensors.tmp-{_dead_pid()}")
    half.write_bytes(good.read_bytes()[:50])
    stray_best = tmp_path / f".model.safetensors.tmp-{_dead_pid()}"
    stray_best.write_bytes(good.read_bytes())  # complete, but no training state: best weights are re-saved
    live = tmp_path / f".config.yaml.tmp-{os.getppid()}"
    live.write_text("being written")
    done = ckpt.recover_interrupted_writes(tmp_path)
    assert not half.exists() and not stray_best.exists() and live.exists() and len(done) == 2
    assert torch.equal(ckpt.read_checkpoint(good)[0]["w"], torch.ones(100))


def test_resuming_a_finished_run_says_nothing_is_left(tmp_path, cli):
    import yaml
    from tiny_configs import TINY_VQA

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_VQA, "train": {**TINY_VQA["train"], "epochs": 1}}))
    assert cli("train", str(config), "--run-dir", str(tmp_path / "run")).returncode == 0
    again = cli("train", "--resume", str(tmp_path / "run"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing left to train" in again.stderr and "epoch 2/1" not in again.stderr


def test_a_run_killed_mid_epoch_continues_that_epoch_at_the_exact_batch(tmp_path, tiny_config):
    """train.checkpoint_every: a SIGKILL between checkpoints loses only the steps since the last one; the resumed run
    ends with the uninterrupted run's weights (in-memory loader: the epoch's remaining batches, the saved RNG)."""
    from vlfuse.train.trainer import Callback

    tiny_config["train"]["checkpoint_every"] = 4
    cfg = _config(tiny_config, 2)
    reference = tmp_path / "reference"
    run_training(cfg, reference)

    class Killed(Exception):
        pass

    class KillAt(Callback):
        def on_step_end(self, trainer, loss, batch_size):
            if trainer.state.step == len(trainer.train_loader) + 6:  # epoch 2, two steps after a checkpoint
                raise Killed

    run = tmp_path / "run"
    with pytest.raises(Killed):
        run_training(cfg, run, callbacks=[KillAt()])
    state = json.loads(ckpt.read_checkpoint(run / LAST_CHECKPOINT)[1]["trainer"])
    assert state["epoch"] == 1 and state["epoch_batches"] > 0  # the checkpoint is mid-epoch 2
    summary = run_training(cfg, run, resume=True)
    assert summary["complete"] and _epochs_logged(run) == [1, 2]
    assert _test_metrics(run) == _test_metrics(reference)
    a, b = ckpt.read_checkpoint(reference / "model.safetensors")[0], ckpt.read_checkpoint(run / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
