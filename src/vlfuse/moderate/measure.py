"""Fitting a policy on validation scores and measuring it on test: AUROC, calibration error (ECE, MCE — torchmetrics;
Brier — scikit-learn) before and after calibration, thresholds and review bands chosen on val, and what they achieve
on test (FPR, recall, precision, review rate, automatic-decision precision, with 95 % intervals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vlfuse.moderate.calibration import Calibrator, fit_calibrator, sigmoid
from vlfuse.moderate.policy import (
    Policy,
    band_of,
    choose_band,
    choose_threshold,
    confusion_at,
    label_decisions,
    rate,
)

ECE_BINS = 15


def calibration_errors(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE (L1, 15 equal-width bins), MCE (max) and Brier score of one label's probabilities."""
    import torch
    from sklearn.metrics import brier_score_loss
    from torchmetrics.functional.classification import binary_calibration_error

    p, y = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    return {
        "ece": float(binary_calibration_error(p, y, n_bins=ECE_BINS, norm="l1")),
        "mce": float(binary_calibration_error(p, y, n_bins=ECE_BINS, norm="max")),
        "brier": float(brier_score_loss(labels, probs)),
    }


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def three_way(probs: np.ndarray, labels: np.ndarray, action: str, low: float, high: float) -> dict[str, Any]:
    """Review rate and the precision of the automatic decisions (flagged ones right, allowed ones right)."""
    decisions = label_decisions(probs, action, low, high)
    y = labels.astype(bool)
    auto_flag, auto_allow = decisions == "block", decisions == "allow"
    if action == "review":  # flagged items go to people: only "allow" is automatic
        auto_flag = np.zeros_like(auto_flag)
    right = int((auto_flag & y).sum() + (auto_allow & ~y).sum())
    automatic = int(auto_flag.sum() + auto_allow.sum())
    return {
        "review_rate": rate(int((decisions == "review").sum()), len(y)),
        "automatic_precision": rate(right, automatic),
        "flag_precision": rate(int((auto_flag & y).sum()), int(auto_flag.sum())),
        "allow_npv": rate(int((auto_allow & ~y).sum()), int(auto_allow.sum())),
    }


def fit_policy(
    policy: Policy, method: str, label_names: list[str], val_logits: np.ndarray, val_labels: np.ndarray
) -> tuple[Calibrator, dict[str, dict[str, Any]]]:
    """Calibration and, per policy label, its threshold and review band — all chosen on validation.

    Returns:
        the calibrator and {label: {"threshold", "low", "high", "target", "action", "met_on_val", "achieved_on_val"}}
        (low/high are None when unbounded).
    """
    calibrator = fit_calibrator(method, val_logits, val_labels)
    probs = calibrator(val_logits)  # (N, K)
    rules: dict[str, dict[str, Any]] = {}
    for name, rule in policy.labels.items():
        k = label_names.index(name)
        choice = choose_threshold(probs[:, k], val_labels[:, k], rule.kind, rule.value)
        low = high = choice.threshold
        if rule.review_precision is not None:
            low, high = choose_band(probs[:, k], val_labels[:, k], choice.threshold, rule.review_precision,
                                    lower_bound=rule.review_guarantee == "lower_bound")
        rules[name] = {
            "target": rule.target, "action": rule.action, "review_precision": rule.review_precision,
            "review_guarantee": rule.review_guarantee,
            "threshold": choice.threshold, "low": None if np.isinf(low) else low,
            "high": None if np.isinf(high) else high, "met_on_val": choice.met, "achieved_on_val": choice.achieved,
        }  # fmt: skip
    return calibrator, rules


def measure_split(
    calibrator: Calibrator, rules: dict[str, dict[str, Any]], label_names: list[str], logits: np.ndarray,
    labels: np.ndarray,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per label on one split: AUROC, calibration errors before/after, the policy at its threshold, the review band."""
    raw, calibrated = sigmoid(logits), calibrator(logits)  # (N, K)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(label_names):
        y = labels[:, k]
        entry: dict[str, Any] = {
            "positives": int(y.sum()), "auroc": auroc(calibrated[:, k], y),
            "before": calibration_errors(raw[:, k], y), "after": calibration_errors(calibrated[:, k], y),
        }  # fmt: skip
        if name in rules:
            rule = rules[name]
            entry["at_threshold"] = confusion_at(calibrated[:, k], y, rule["threshold"])
            entry["three_way"] = three_way(calibrated[:, k], y, rule["action"], *band_of(rule))
        out[name] = entry
    return out


def item_review_rate(calibrator, rules, label_names, logits: np.ndarray) -> float:
    """Fraction of items whose overall decision (most severe over the policy's labels) is review."""
    probs = calibrator(logits)
    review = np.zeros(len(probs), dtype=bool)
    block = np.zeros(len(probs), dtype=bool)
    for name, rule in rules.items():
        k = label_names.index(name)
        d = label_decisions(probs[:, k], rule["action"], *band_of(rule))
        review |= d == "review"
        block |= d == "block"
    return float((review & ~block).mean())


def plot_reliability(
    labels_names: list[str], logits: np.ndarray, labels: np.ndarray, calibrator: Calibrator, path: Path, title: str
) -> None:
    """One reliability diagram per label (before and after calibration) into a single PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    raw, calibrated = sigmoid(logits), calibrator(logits)
    fig, axes = plt.subplots(1, len(labels_names), figsize=(4 * len(labels_names), 4), squeeze=False)
    for k, (name, ax) in enumerate(zip(labels_names, axes[0], strict=True)):
        ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
        for probs, style, what in ((raw, "o-", "raw"), (calibrated, "s-", "calibrated")):
            frac, mean = calibration_curve(labels[:, k], probs[:, k], n_bins=ECE_BINS, strategy="uniform")
            ece = calibration_errors(probs[:, k], labels[:, k])["ece"]
            ax.plot(mean, frac, style, ms=3, label=f"{what} (ECE {100 * ece:.2f} %)")
        ax.set(title=name, xlabel="predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
