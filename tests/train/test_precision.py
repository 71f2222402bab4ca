"""`train.precision: auto`: bf16 only where the hardware computes it natively; the choice and its reason recorded."""

import json
import logging

import pytest
import torch

from vlfuse.config import TrainConfig
from vlfuse.train import precision


@pytest.fixture
def flags(monkeypatch):
    def set_flags(*names: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(names))

    return set_flags


def test_auto_is_the_default():
    assert TrainConfig().precision == "auto"


@pytest.mark.parametrize("names, expected", [
    (("sse4_2", "avx2", "avx512f"), "fp32"),  # AVX-512 without its bf16 extension emulates bf16
    (("avx2", "avx512f", "avx512_bf16"), "bf16"),
    (("avx2", "amx_bf16", "amx_tile"), "bf16"),
    ((), "fp32"),  # flags unknown (not Linux)
])  # fmt: skip
def test_auto_follows_native_bf16(flags, names, expected):
    flags(*names)
    used, why = precision.resolve_precision("auto", torch.device("cpu"))
    assert used == expected and why.startswith("auto: the CPU")


def test_bf16_asked_of_a_cpu_without_it_is_kept_with_a_warning(flags, caplog):
    flags("avx2")
    precision._warn_emulated.cache_clear()  # said once per process
    with caplog.at_level(logging.WARNING):
        used, _ = precision.resolve_precision("bf16", torch.device("cpu"))
    assert used == "bf16" and "bf16 is emulated here" in caplog.text and "precision: auto" in caplog.text
    assert precision.resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"


def test_the_run_records_the_precision_and_why(trained_runs):
    whole, _ = trained_runs("classify")  # the tiny configs ask for fp32 explicitly
    recorded = json.loads((whole / "run.json").read_text())["precision"]
    assert recorded["requested"] == "fp32" and recorded["used"] == "fp32"
    assert recorded["why"].startswith("set in the config")


def test_a_bf16_run_trains_and_records_it(tmp_path, tiny_config):
    from vlfuse.task import validate_config
    from vlfuse.train.runner import run_training

    tiny_config["train"].update(epochs=1, precision="bf16")
    tiny_config["data"].update(limit=120, test_limit=40)
    summary = run_training(validate_config(tiny_config), tmp_path / "run")
    assert summary["precision"]["used"] == "bf16" and summary["complete"]
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < loss < 10 for loss in losses)
