"""Moderation on the built-in marketplace benchmark: does fusion beat the confounders, is the calibration honest, does
the policy hold on test?

Trains `configs/moderate_marketplace.yaml` with its fusion and with image-only / text-only baselines (same data,
encoders, budget and seed), then reads each run's moderation.json: test AUROC per label and macro over the
multimodal labels (mismatch, prohibited), ECE before/after temperature scaling, FPR / recall at the thresholds
chosen on val for a 1 % FPR target (95 % Wilson intervals), and the review band for 99.5 % automatic-decision
precision with its review rate. When `alt-profanity-check` is installed, its own score for the text-only `abusive`
label is reported beside the trained models (a baseline, not a feature).

    python benchmarks/moderation.py                       # → benchmarks/results/moderation.{json,md}
    python benchmarks/moderation.py --fusions product     # one run (reused when complete)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import vlfuse
from vlfuse.task import load_config

ROOT = Path(__file__).resolve().parents[1]
MULTIMODAL = ("mismatch", "prohibited")
BASELINES = {"image_only": {"name": "image_only"}, "text_only": {"name": "text_only"}}


def train_variant(config: Path, fusion: str, runs: Path, epochs: int | None) -> tuple[Path, float | None]:
    """Train (or reuse) one variant; returns its run directory and training seconds (None when reused)."""
    cfg = load_config(config)
    overrides: dict = {}
    if fusion in BASELINES:
        overrides["model.fusion"] = BASELINES[fusion]
        overrides["model.modality_dropout"] = 0.0  # a single-modality model has nothing to drop
    elif fusion != cfg.model.fusion.name:
        overrides["model.fusion"] = {"name": fusion, "dim": 256}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    run_dir = runs / fusion
    if (run_dir / "moderation.json").is_file():
        return run_dir, None
    started = time.perf_counter()
    vlfuse.train(config, run_dir=run_dir, overrides=overrides, overwrite=True)
    return run_dir, time.perf_counter() - started


def profanity_baseline(run_dir: Path) -> dict | None:
    """alt-profanity-check's probability as the `abusive` score on the test split (None when not installed)."""
    try:
        from profanity_check import predict_prob
    except ImportError:
        return None
    from sklearn.metrics import roc_auc_score

    run = vlfuse.load_run(run_dir)
    test = run.split_data("test")
    k = run.scores.index("abusive")
    y = test.labels.numpy()[:, k]
    p = predict_prob(test.texts)
    return {"auroc": float(roc_auc_score(y, p)), "items": len(y),
            "note": "alt-profanity-check 1.9 (MIT, ships its model), applied to the test titles as is"}  # fmt: skip


def calibration_methods(run_dir: Path) -> dict:
    """Test ECE per label of each calibration method fitted on the same run's validation logits."""
    import torch

    from vlfuse.classify.evaluate import predict_logits
    from vlfuse.moderate.calibration import fit_calibrator
    from vlfuse.moderate.measure import calibration_errors
    from vlfuse.moderate.task import label_matrix

    run = vlfuse.load_run(run_dir)
    logits, labels = {}, {}
    for name, split in zip(("val", "test"), run.splits("val", "test"), strict=True):
        logits[name] = predict_logits(run.model, split, run.preprocess, batch_size=512,
                                      device=torch.device("cpu")).numpy().astype(np.float64)  # fmt: skip
        labels[name] = label_matrix(split.labels, len(run.scores))
    out = {}
    for method in ("none", "temperature", "isotonic"):
        calibrator = fit_calibrator(method, logits["val"], labels["val"])
        probs = calibrator(logits["test"])
        out[method] = {label: calibration_errors(probs[:, k], labels["test"][:, k]) for k, label in
                       enumerate(run.scores)}  # fmt: skip
    return out


def summarize(run_dir: Path, seconds: float | None) -> dict:
    moderation = json.loads((run_dir / "moderation.json").read_text())
    test = moderation["measures"]["test"]
    labels = {}
    for name, m in test.items():
        entry = {"auroc": m["auroc"], "ece_before": m["before"]["ece"], "ece_after": m["after"]["ece"],
                 "mce_after": m["after"]["mce"], "brier_after": m["after"]["brier"],
                 "positives": m["positives"]}  # fmt: skip
        if "at_threshold" in m:
            entry |= {"fpr": m["at_threshold"]["fpr"], "recall": m["at_threshold"]["recall"],
                      "precision": m["at_threshold"]["precision"], "review_rate": m["three_way"]["review_rate"],
                      "automatic_precision": m["three_way"]["automatic_precision"]}  # fmt: skip
        labels[name] = entry
    aurocs = [labels[n]["auroc"] for n in MULTIMODAL if labels[n]["auroc"] is not None]
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    run_summary = json.loads((run_dir / "run.json").read_text())
    cfg = vlfuse.load_run(run_dir).cfg
    return {"run": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
            "fusion": cfg.model.fusion.name, "epochs": cfg.train.epochs, "train_seconds": seconds,
            "run_total_seconds": run_summary.get("total_seconds"),
            "epoch_train_seconds": [round(e["train_seconds"], 1) for e in epochs],
            "macro_auroc_multimodal": float(np.mean(aurocs)), "labels": labels,
            "item_review_rate_test": moderation["item_review_rate"].get("test"),
            "temperatures": moderation["calibration"].get("temperature")}  # fmt: skip


def pct(rate: dict | None) -> str:
    if not rate or rate.get("value") is None:
        return "–"
    return f"{100 * rate['value']:.2f} % [{100 * rate['ci95'][0]:.2f}, {100 * rate['ci95'][1]:.2f}]"


def markdown(results: dict) -> str:
    lines = ["| model | macro AUROC (mismatch, prohibited) | mismatch | prohibited | abusive |",
             "|---|---|---|---|---|"]
    for name, r in results["variants"].items():
        a = {k: v["auroc"] for k, v in r["labels"].items()}
        lines.append(f"| {name} | {r['macro_auroc_multimodal']:.4f} | {a['mismatch']:.4f} | {a['prohibited']:.4f} | "
                     f"{a['abusive']:.4f} |")  # fmt: skip
    if results.get("profanity_check"):
        lines.append(f"| alt-profanity-check (abusive only) | – | – | – | {results['profanity_check']['auroc']:.4f} |")
    main = results["variants"][results["main"]]
    lines += ["", f"Calibration and policy of `{results['main']}` on test (thresholds and bands chosen on val):", "",
              "| label | ECE before → after | FPR (target 1 %) | recall | review rate | automatic-decision precision |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in main["labels"].items():
        ece = f"{100 * m['ece_before']:.2f} % → {100 * m['ece_after']:.2f} %"
        lines.append(f"| {name} | {ece} | {pct(m.get('fpr'))} | {pct(m.get('recall'))} | "
                     f"{pct(m.get('review_rate'))} | {pct(m.get('automatic_precision'))} |")  # fmt: skip
    lines.append(f"\nItems sent to review (any label): {100 * main['item_review_rate_test']:.2f} % of the test split.")
    methods = results.get("calibration_methods")
    if methods:
        labels = list(next(iter(methods.values())))
        lines += ["", "Test ECE of each calibration method (fit on val):", "",
                  "| method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]  # fmt: skip
        lines += [f"| {m} | " + " | ".join(f"{100 * v[label]['ece']:.3f} %" for label in labels) + " |"
                  for m, v in methods.items()]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/moderate_marketplace.yaml")
    parser.add_argument("--fusions", default="product,image_only,text_only")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/bench_moderation")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/moderation")
    args = parser.parse_args()
    fusions = args.fusions.split(",")
    variants = {}
    for fusion in fusions:
        run_dir, seconds = train_variant(args.config, fusion, args.runs, args.epochs)
        variants[fusion] = summarize(run_dir, seconds)
        print(f"{fusion}: macro AUROC {variants[fusion]['macro_auroc_multimodal']:.4f}", flush=True)
    results = {"config": str(args.config.relative_to(ROOT)), "main": fusions[0], "variants": variants,
               "profanity_check": profanity_baseline(args.runs / fusions[0]),
               "calibration_methods": calibration_methods(args.runs / fusions[0])}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
