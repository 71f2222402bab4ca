"""The `vlfuse` command line, end to end on a tiny easy-VQA subset (real subprocesses)."""

import json
import subprocess
import sys

import pytest
import yaml


def vlfuse(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "vlfuse.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def vlfuse_reporting_torch(*args, timeout=120):
    """`vlfuse ARGS` in a fresh interpreter that says on stderr, as it exits, whether torch was imported."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, file=sys.stderr))\n"
            f"sys.argv = ['vlfuse', *{list(map(str, args))!r}]\n"
            "from vlfuse.cli import main\n"
            "main()\n")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tiny_configs import TINY_VQA

    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_VQA))
    run = tmp / "run"
    proc = vlfuse("train", config, "--run-dir", run, "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test" in proc.stdout and "accuracy" in proc.stdout
    return run


def test_train_writes_run(trained_run):
    metrics = json.loads((trained_run / "test_metrics.json").read_text())
    assert metrics["test"]["samples"] > 0
    assert yaml.safe_load((trained_run / "config.yaml").read_text())["train"]["epochs"] == 1


def test_evaluate_matches_training_metrics(trained_run):
    proc = vlfuse("evaluate", trained_run, "--split", "test", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = json.loads((trained_run / "test_metrics.json").read_text())["test"]
    assert got["accuracy"] == pytest.approx(expected["accuracy"])


def test_predict_json_top_k(trained_run):
    from easy_vqa import get_test_image_paths

    image = get_test_image_paths()[0]
    proc = vlfuse(
        "predict", trained_run, "--image", image, "--text", "what shape is in the image?", "--top-k", "4", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)
    assert len(preds) == 4
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    labels = json.loads((trained_run / "labels.json").read_text())["label_names"]
    assert all(p["label"] in labels for p in preds)


def test_predict_missing_image_is_clear(trained_run, tmp_path):
    proc = vlfuse("predict", trained_run, "--image", tmp_path / "nope.png", "--text", "what color?")
    assert proc.returncode == 2
    assert "nope.png" in proc.stderr


def test_predict_on_a_current_export_runs_without_torch(trained_run, tmp_path):
    """After `vlfuse export`, `vlfuse predict` answers from the ONNX graph without importing torch, with PyTorch's
    answer; new weights make the export stale and predict goes back to PyTorch."""
    import shutil

    from easy_vqa import get_test_image_paths

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("onnx"))
    assert vlfuse("export", run).returncode == 0
    image = get_test_image_paths()[3]
    args = ["predict", str(run), "--image", image, "--text", "what color is the shape?", "--top-k", "5", "--json"]
    fast = vlfuse_reporting_torch(*args)
    assert fast.returncode == 0, fast.stderr[-2000:]
    assert "torch loaded: False" in fast.stderr
    torch_answer = vlfuse(*args, "--backend", "torch")
    assert torch_answer.returncode == 0, torch_answer.stderr[-2000:]
    onnx, reference = json.loads(fast.stdout), json.loads(torch_answer.stdout)
    assert [p["label"] for p in onnx] == [p["label"] for p in reference]
    assert all(abs(a["probability"] - b["probability"]) < 1e-4 for a, b in zip(onnx, reference, strict=True))

    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())  # same bytes: still current
    assert "torch loaded: False" in vlfuse_reporting_torch(*args).stderr
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # other weights (the last byte of the last tensor): the export no longer matches them
    weights.write_bytes(bytes(data))
    stale = vlfuse_reporting_torch(*args)
    assert stale.returncode == 0 and "torch loaded: True" in stale.stderr, stale.stderr[-2000:]


def test_train_unknown_key_is_clear(tmp_path):
    from tiny_configs import TINY_VQA

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_VQA, "trian": {}}))
    proc = vlfuse("train", config)
    assert proc.returncode == 2
    assert "unknown key 'trian'" in proc.stderr


def test_list_shows_registries():
    proc = vlfuse("list")
    assert proc.returncode == 0
    for name in ("seed_cnn", "vit", "seed_lstm", "transformer", "product", "attention", "easy-vqa"):
        assert name in proc.stdout


@pytest.mark.parametrize("command", [["--help"], ["list"], ["train", "--help"]])
def test_light_commands_start_without_torch(command):
    """`vlfuse --help` and `vlfuse list` name every component and dataset without importing torch (the start-up cost
    of the command line is torch's import)."""
    proc = vlfuse_reporting_torch(*command, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch loaded: False" in proc.stderr
    if command == ["list"]:
        assert "seed_cnn" in proc.stdout and "tuxpaint" in proc.stdout and "photo" in proc.stdout


def test_data_show_writes_grid(tmp_path):
    out = tmp_path / "grid.png"
    proc = vlfuse("data", "show", "easy-vqa", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000
    assert "38575" in proc.stdout.replace(",", "") or "34720" in proc.stdout.replace(",", "")


def test_train_skip_lists_bad_rows_on_console(tmp_path, tiny_table):
    config = tmp_path / "table.yaml"
    config.write_text(yaml.safe_dump(tiny_table(bad_rows=True)))
    proc = vlfuse("train", config, "--run-dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 bad row(s) skipped" in proc.stdout
    assert "missing.png" in proc.stdout


def test_python_api_train_and_predict(tmp_path, tiny_config):
    import vlfuse

    tiny_config["train"]["epochs"] = 1
    run = vlfuse.train(tiny_config, run_dir=tmp_path / "run")
    from easy_vqa import get_test_image_paths

    preds = run.predict(image=get_test_image_paths()[3], text="what color is the shape?", top_k=2)
    assert len(preds) == 2 and preds[0].probability >= preds[1].probability
    again = vlfuse.load_run(tmp_path / "run")
    assert again.predict(image=get_test_image_paths()[3], text="what color is the shape?", top_k=2) == preds
