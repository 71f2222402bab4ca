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


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vlfuse.cli", "train", *args]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_match_one_process(tmp_path, tiny_config):
    """Two `vlfuse train --nnodes 2` launches (one process each) meet at a c10d rendezvous and train one model; its
    test metrics equal the single-process run's within run-to-run noise (same global batch, gradients averaged)."""
    tiny_config["train"].update(epochs=2, threads=1)
    tiny_config["model"]["head"]["dropout"] = 0.0
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    single = tmp_path / "single"
    subprocess.run(_cli(str(config), "--run-dir", str(single)), check=True, capture_output=True, timeout=300)
    run = tmp_path / "two-nodes"
    common = [str(config), "--run-dir", str(run), "--nnodes", "2", "--rdzv-endpoint", f"localhost:{_free_port()}"]
    nodes = [subprocess.Popen(_cli(*common, "--node-rank", str(rank)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for rank in (0, 1)]  # fmt: skip
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    summary = json.loads((run / "run.json").read_text())
    assert summary["processes"] == 2 and summary["complete"]
    one = json.loads((single / "test_metrics.json").read_text())["test"]
    two = json.loads((run / "test_metrics.json").read_text())["test"]
    assert abs(one["accuracy"] - two["accuracy"]) <= 0.05, (one, two)


def test_a_killed_worker_restarts_the_group_from_the_last_checkpoint(tmp_path, tiny_config):
    """--max-restarts: SIGKILL one of two workers after the run's first checkpoint; torchrun restarts the group, which
    continues from that checkpoint (not from scratch) and finishes with metrics."""
    import os
    import signal
    import time

    tiny_config["train"].update(epochs=3, threads=1, checkpoint_every=5)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    run = tmp_path / "elastic"
    launcher = subprocess.Popen(_cli(str(config), "--run-dir", str(run), "--nproc", "2", "--max-restarts", "1"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    checkpoint = run / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists(), "no checkpoint was written"
    workers = _torchrun(launcher.pid).children()  # the training processes (theirs are DataLoader workers)
    assert workers, "no worker processes found"
    os.kill(workers[0].pid, signal.SIGKILL)
    output, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, output[-3000:]
    assert "restarted after a failed process" in output
    summary = json.loads((run / "run.json").read_text())
    assert summary["complete"] and summary["epochs"] == 3 and "test" in summary["metrics"]


def _torchrun(launcher_pid: int):
    """The torchrun agent that `vlfuse train --nproc` started (its children are the training processes)."""
    import time

    import psutil

    for _ in range(200):
        agents = [p for p in psutil.Process(launcher_pid).children() if "torch.distributed.run" in p.cmdline()]
        if agents:
            return agents[0]
        time.sleep(0.05)
    raise AssertionError("torchrun did not start")
