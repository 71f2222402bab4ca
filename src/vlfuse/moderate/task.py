"""Training a moderation model: the classifier's training (fusion zoo, multilabel or binary head), then calibration,
policy thresholds and review bands chosen on validation and measured on test.

Run directory: what a classify run holds, plus moderation.json (calibration, fitted rules, val/test measures),
plots/reliability_{val,test}.png and a "Moderation" section in report.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from vlfuse.atomic import atomic_write_text
from vlfuse.classify.task import ClassifyTask
from vlfuse.errors import ConfigError
from vlfuse.moderate.config import ModerateConfig
from vlfuse.moderate.measure import fit_policy, item_review_rate, measure_split, plot_reliability
from vlfuse.moderate.run import MODERATION_FILE, score_labels
from vlfuse.train.runner import StageRecord


def label_matrix(labels, n_scores: int) -> np.ndarray:
    """A split's labels as (N, K) 0/1 floats (binary labels (N,) become (N, 1))."""
    y = labels.numpy().astype(np.float64)
    return y.reshape(-1, n_scores)


class ModerateTask(ClassifyTask):
    cfg: ModerateConfig

    def prepare(self) -> None:
        super().prepare()
        if self.data.objective == "multiclass":
            raise ConfigError("a moderate run scores each label on its own: set data.objective to multilabel (or "
                              "binary), not multiclass")  # fmt: skip
        self.scores = score_labels(self.data.objective, self.data.label_names)
        self.cfg.policy.check_labels(self.scores, "policy")

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        result = super().finish(model, records)
        splits = {"val": self.data.val, "test": self.data.test}
        logits = {name: x.numpy().astype(np.float64) for name, x in self.final_logits.items()}  # (N, K) each
        labels = {name: label_matrix(splits[name].labels, len(self.scores)) for name in logits}
        moderation = fit_and_record(self.cfg, self.scores, logits, labels, self.ctx.run_dir)
        result["moderation"] = {s: {k: v.get("auroc") for k, v in m.items()} for s, m in moderation["measures"].items()}
        return result


def fit_and_record(
    cfg: ModerateConfig, scores: list[str], logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], run_dir: Path
) -> dict[str, Any]:  # fmt: skip
    """Fit calibration and the policy on val, measure on every split given; write moderation.json, the reliability
    plots and the report's moderation section (replacing an earlier one)."""
    calibrator, rules = fit_policy(cfg.policy, cfg.calibration.method, scores, logits["val"], labels["val"])
    measures = {name: measure_split(calibrator, rules, scores, logits[name], labels[name]) for name in logits}
    review = {name: item_review_rate(calibrator, rules, scores, logits[name]) for name in logits}
    moderation = {"score_labels": scores, "calibration": calibrator.as_dict(), "rules": rules, "measures": measures,
                  "item_review_rate": review}  # fmt: skip
    atomic_write_text(run_dir / MODERATION_FILE, json.dumps(moderation, indent=1))
    (run_dir / "plots").mkdir(exist_ok=True)
    for name in logits:
        plot_reliability(scores, logits[name], labels[name], calibrator, run_dir / f"plots/reliability_{name}.png",
                         f"Reliability ({name})")  # fmt: skip
    report = run_dir / "report.md"
    before = report.read_text().split(SECTION)[0].rstrip("\n") if report.is_file() else ""
    atomic_write_text(report, before + "\n" + moderation_section(moderation, list(logits)))
    return moderation


def refit_policy(run: str | Path, *, policy: Any = None, calibration: str | None = None) -> dict[str, Any]:
    """Choose a finished moderate run's calibration, thresholds and bands again — for a new policy (a file path or a
    mapping) and/or calibration method — on its validation split, without retraining; its config.yaml then records
    the new policy. Returns the new moderation.json content."""
    from vlfuse.classify.evaluate import predict_logits
    from vlfuse.config import save_config
    from vlfuse.task import load_run_for

    loaded = load_run_for(run, "moderate")
    updates: dict[str, Any] = {}
    if policy is not None:
        updates["policy"] = policy
    if calibration is not None:
        updates["calibration"] = {"method": calibration}
    raw = loaded.cfg.model_dump(mode="json") | updates
    cfg = ModerateConfig.model_validate(raw)
    cfg.policy.check_labels(loaded.scores, "policy")
    logits, labels = {}, {}
    device = next(loaded.model.parameters()).device
    for name, split in zip(("val", "test"), loaded.splits("val", "test"), strict=True):
        logits[name] = predict_logits(loaded.model, split, loaded.preprocess, batch_size=cfg.train.eval_batch_size,
                                      device=device).numpy().astype(np.float64)  # fmt: skip
        labels[name] = label_matrix(split.labels, len(loaded.scores))
    moderation = fit_and_record(cfg, loaded.scores, logits, labels, loaded.path)
    save_config(cfg, loaded.path / "config.yaml")
    return moderation


def _pct(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    low, high = entry["ci95"]
    return f"{100 * entry['value']:.2f} % [{100 * low:.2f}, {100 * high:.2f}]"


SECTION = "## Moderation"


def moderation_section(moderation: dict[str, Any], splits: list[str]) -> str:
    """The report's moderation section: calibration, the policy on test, reliability diagrams."""
    lines = ["", SECTION, "", f"Calibration: {moderation['calibration']['method']} (fit on val).", "",
             "| split | label | AUROC | ECE before | ECE after | Brier after |", "|---|---|---|---|---|---|"]
    for split in splits:
        for label, m in moderation["measures"][split].items():
            auroc = "–" if m["auroc"] is None else f"{m['auroc']:.4f}"
            lines.append(f"| {split} | {label} | {auroc} | {100 * m['before']['ece']:.2f} % | "
                         f"{100 * m['after']['ece']:.2f} % | {m['after']['brier']:.4f} |")  # fmt: skip
    lines += ["", "Policy, chosen on val, measured on test (95 % Wilson intervals):", "",
              "| label | target | threshold | test FPR | test recall | test precision | review rate | "
              "automatic-decision precision |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    test = moderation["measures"].get("test", {})
    for label, rule in moderation["rules"].items():
        m = test.get(label, {})
        at, three = m.get("at_threshold", {}), m.get("three_way", {})
        target = ", ".join(f"{k} {v}" for k, v in rule["target"].items())
        if not rule["met_on_val"]:
            target += f" (NOT met on val: {rule['achieved_on_val']:.4f})"
        lines.append(f"| {label} | {target} | {rule['threshold']:.4f} | {_pct(at.get('fpr'))} | "
                     f"{_pct(at.get('recall'))} | {_pct(at.get('precision'))} | {_pct(three.get('review_rate'))} | "
                     f"{_pct(three.get('automatic_precision'))} |")  # fmt: skip
    lines += [""] + [f"![Reliability ({s})](plots/reliability_{s}.png)" for s in splits] + [""]
    return "\n".join(lines)
