"""`vlfuse compare` end to end on a tiny budget, and the confidence-interval arithmetic."""

import json
import subprocess
import sys

import pytest
import yaml
from tiny_configs import TINY_VQA

from vlfuse.compare import mean_ci95, resolve_methods


def test_mean_ci95_matches_student_t():
    mean, half = mean_ci95([0.9, 0.92, 0.94])
    assert mean == pytest.approx(0.92)
    assert half == pytest.approx(4.303 * 0.02 / 3**0.5, rel=1e-3)
    assert mean_ci95([0.5]) == (0.5, 0.0)


def test_resolve_methods_always_adds_baselines_and_rejects_unknown():
    assert resolve_methods("product,concat") == ["product", "concat", "image_only", "text_only"]
    all_methods = resolve_methods("all")
    assert {"gated", "bilinear", "late", "cross_attention"} <= set(all_methods)
    assert all_methods.count("image_only") == 1
    from vlfuse.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown fusion 'prodcut'"):
        resolve_methods("prodcut")


def test_compare_cli_tiny(tmp_path):
    cfg = {**TINY_VQA, "train": {**TINY_VQA["train"], "epochs": 1}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "vlfuse.cli", "compare", str(config), "--fusions", "product,concat", "--seeds", "2",
         "--jobs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in results["methods"]] == ["product", "concat", "image_only", "text_only"]
    assert len(results["runs"]) == 8 and results["jobs"] == 2
    for row in results["methods"]:
        assert 0 <= row["mean"] <= 1 and row["ci95"] >= 0 and row["latency_ms"] > 0 and row["parameters"] > 0
    seeds = {(r["method"], r["seed"]) for r in results["runs"]}
    assert len(seeds) == 8
    table = (out / "compare.md").read_text()
    assert "gain vs best unimodal" in table and "image share (%)" in table and "EMAP gap (points)" in table
    rows = {m["method"]: m for m in results["methods"]}
    assert rows["image_only"]["image_share"] == 1.0 and rows["text_only"]["image_share"] == 0.0
    assert rows["image_only"]["emap_gap"] is None
    for method in ("product", "concat"):
        assert 0 <= rows[method]["image_share"] <= 1 and -1 <= rows[method]["emap_gap"] <= 1
    assert "| image_only |" in table and "| — |" in table
    assert (out / "compare.png").stat().st_size > 1000


def test_compare_temporal_modules_of_a_video_config(tmp_path):
    """`--temporal` on a video config: every named module plus the order-blind baselines, with order-dependent and
    appearance accuracy per method; a non-video config is refused."""
    from tiny_configs import TINY_VIDEO

    cfg = {**TINY_VIDEO, "train": {**TINY_VIDEO["train"], "epochs": 1}}
    config = tmp_path / "tiny_video.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "vlfuse.cli", "compare", str(config), "--temporal", "gru", "--seeds", "1",
         "--jobs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in results["methods"]] == ["gru", "mean", "middle_frame", "shuffled"]
    assert results["compared"] == "temporal"
    for row in results["methods"]:
        order, appearance = row["by_kind"]["order"], row["by_kind"]["appearance"]
        assert 0 <= order[0] <= 1 and 0 <= appearance[0] <= 1 and row["latency_ms"] > 0
    configs = [yaml.safe_load((out / "runs" / f"{m}-seed0" / "config.yaml").read_text()) for m in ("gru", "mean")]
    assert [c["model"]["temporal"]["name"] for c in configs] == ["gru", "mean"]
    assert configs[0]["model"]["fusion"] == configs[1]["model"]["fusion"]  # only the temporal module changes
    table = (out / "compare.md").read_text()
    assert "order-dependent questions (%)" in table and "| shuffled |" in table
    image_config = tmp_path / "vqa.yaml"
    image_config.write_text(yaml.safe_dump(TINY_VQA))
    refused = subprocess.run([sys.executable, "-m", "vlfuse.cli", "compare", str(image_config), "--temporal", "all"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode != 0 and "temporal modules of a video config" in " ".join(refused.stderr.split())
