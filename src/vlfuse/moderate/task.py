"""Training a moderation model: the classifier's training (fusion zoo, multilabel or binary head), then calibration,
policy thresholds and review bands chosen on validation and measured on test.

Run directory: what a classify run holds, plus moderation.json (calibration, fitted rules, val/test measures),
plots/reliability_{val,test}.png and a "Moderation" section in report.md.
"""

from __future__ import annotations

import json
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
        cfg, data, run_dir = self.cfg, self.data, self.ctx.run_dir
        splits = {"val": data.val, "test": data.test}
        logits, labels = {}, {}
        for name, split in splits.items():
            if split is not None and len(split):
                logits[name] = self._score(model, split)[1].numpy().astype(np.float64)  # (N, K)
                labels[name] = label_matrix(split.labels, len(self.scores))
        calibrator, rules = fit_policy(cfg.policy, cfg.calibration.method, self.scores, logits["val"], labels["val"])
        measures = {name: measure_split(calibrator, rules, self.scores, logits[name], labels[name]) for name in logits}
        review = {name: item_review_rate(calibrator, rules, self.scores, logits[name]) for name in logits}
        moderation = {"score_labels": self.scores, "calibration": calibrator.as_dict(), "rules": rules,
                      "measures": measures, "item_review_rate": review}  # fmt: skip
        atomic_write_text(run_dir / MODERATION_FILE, json.dumps(moderation, indent=1))
        for name in logits:
            plot_reliability(self.scores, logits[name], labels[name], calibrator,
                             run_dir / f"plots/reliability_{name}.png", f"Reliability ({name})")  # fmt: skip
        with open(run_dir / "report.md", "a") as report:
            report.write(moderation_section(moderation, list(logits)))
        result["moderation"] = {name: {k: v.get("auroc") for k, v in m.items()} for name, m in measures.items()}
        return result


def _pct(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "–"
    low, high = entry["ci95"]
    return f"{100 * entry['value']:.2f} % [{100 * low:.2f}, {100 * high:.2f}]"


def moderation_section(moderation: dict[str, Any], splits: list[str]) -> str:
    """The report's moderation section: calibration, the policy on test, reliability diagrams."""
    lines = ["", "## Moderation", "", f"Calibration: {moderation['calibration']['method']} (fit on val).", "",
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
