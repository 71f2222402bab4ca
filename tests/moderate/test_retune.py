"""`vlfuse retune`: a new policy or calibration method chosen on the run's validation split, without retraining."""

from __future__ import annotations

import json
import shutil

import yaml

import vlfuse


def test_retune_applies_a_new_policy_without_retraining(trained_runs, cli, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_runs("moderate")[0], run_dir)
    weights = (run_dir / "model.safetensors").read_bytes()
    before = json.loads((run_dir / "moderation.json").read_text())
    policy = tmp_path / "strict.yaml"
    policy.write_text(yaml.safe_dump({"labels": {"prohibited": {"target": {"min_recall": 0.99}, "action": "review"}}}))
    done = cli("retune", str(run_dir), "--policy", str(policy), "--calibration", "isotonic")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prohibited: threshold" in done.stdout
    after = json.loads((run_dir / "moderation.json").read_text())
    assert set(after["rules"]) == {"prohibited"} and after["rules"]["prohibited"]["target"] == {"min_recall": 0.99}
    assert after["calibration"]["method"] == "isotonic" and before["calibration"]["method"] == "temperature"
    assert after["measures"]["val"]["prohibited"]["at_threshold"]["recall"]["value"] >= 0.99
    assert (run_dir / "model.safetensors").read_bytes() == weights  # nothing retrained
    run = vlfuse.load_run(run_dir)  # the run now decides by the new policy, and says so in its config
    assert list(run.rules) == ["prohibited"] and run.cfg.policy.labels["prohibited"].action == "review"
    assert run.moderate(None, ["replica bag"])[0].labels["mismatch"].decision == "allow"  # no rule: never flagged
    assert (run_dir / "report.md").read_text().count("## Moderation") == 1


def test_retune_names_an_unknown_label(trained_runs, cli, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_runs("moderate")[0], run_dir)
    policy = tmp_path / "p.yaml"
    policy.write_text("labels:\n  spam: {target: {max_fpr: 0.01}}\n")
    done = cli("retune", str(run_dir), "--policy", str(policy))
    assert done.returncode == 2 and "unknown label(s) 'spam'" in done.stderr, done.stderr[-3000:]
