"""A real two-process DistributedDataParallel run (gloo on CPU) through the CLI."""

import json
import subprocess
import sys

import yaml


def test_two_process_ddp_run(tmp_path, tiny_config):
    tiny_config["train"]["epochs"] = 1
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    run = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "vlfuse.cli", "train", str(config), "--run-dir", str(run), "--nproc", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "run.json").read_text())
    assert summary["processes"] == 2 and summary["complete"]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["epoch"] == 1 and "val_accuracy" in record
    assert (run / "model.safetensors").is_file()
