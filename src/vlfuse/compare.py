"""A fair fusion comparison: every chosen fusion plus both unimodal baselines, N seeds each, same data, budget and
schedule; mean ± 95 % confidence interval of the test metric, parameters, training time and throughput, inference
latency, the gain over the best unimodal baseline, and whether the method really fuses (image share of the exact
Shapley split, EMAP gap; `vlfuse.explain`). Writes compare.json, compare.md and compare.png.

Runs execute in `jobs` worker processes, each with an equal share of the cores other processes leave free (small
models use two single-threaded processes better than one two-threaded one; `benchmarks/compare_parallelism.py`
measures it).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from vlfuse.classify.config import ClassifyConfig
from vlfuse.config import apply_overrides, config_to_dict
from vlfuse.data.loader import BatchLoader
from vlfuse.data.prepare import prepare_data
from vlfuse.errors import ConfigError
from vlfuse.registry import FUSIONS, TEMPORAL_MODULES
from vlfuse.task import load_run, validate_config
from vlfuse.threads import available_cores, choose_threads
from vlfuse.train.runner import run_training

log = logging.getLogger(__name__)

BASELINES = ("image_only", "text_only")
TEMPORAL_BASELINES = ("mean", "middle_frame", "shuffled")  # the order-blind temporal modules (video configs)
# two-sided 95 % Student-t quantiles for 1..30 degrees of freedom (normal beyond)
_T95 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]  # fmt: skip


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % confidence interval (Student t; 0 for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    t = _T95[len(values) - 2] if len(values) - 1 <= len(_T95) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


@dataclass
class RunSpec:
    method: str
    seed: int
    config: dict[str, Any]
    run_dir: str
    threads: int


def method_config(base: ClassifyConfig, method: str, seed: int, threads: int, part: str = "fusion") -> dict[str, Any]:
    """The base config with another fusion — or, with part="temporal", another temporal module — at its own defaults,
    or the base's settings if it is the same one."""
    raw = config_to_dict(base)
    component = raw["model"][part] if raw["model"][part]["name"] == method else {"name": method}
    return apply_overrides(raw, {f"model.{part}": component, "seed": seed, "train.threads": threads})


def _latency_ms(run, samples: int = 30) -> float:
    """Median wall time of a loaded run predicting one test sample (batch of 1), in milliseconds."""
    cfg = run.cfg.data.model_copy(update={"test_limit": samples, "limit": 50})
    data = prepare_data(cfg, seed=run.cfg.seed, tokenizer=run.tokenizer, label_names=run.label_names)
    loader = BatchLoader(data.test, run.preprocess, batch_size=1, shuffle=False)
    times = []
    with torch.inference_mode():
        for batch in loader:
            start = time.perf_counter()
            run.model(batch)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[3:] or times)


def _fusion_use(run, rows: int = 2000) -> dict[str, float | None]:
    """Whether a loaded run's method really fuses, on `rows` test rows: the mean image share of the exact
    image-vs-text Shapley split and the EMAP gap (accuracy over that of the best additive projection); None where a
    model reads one modality (image share 1 or 0, no interactions) or the objective is multilabel (no EMAP)."""
    from vlfuse.explain.emap import emap_split
    from vlfuse.explain.split import modality_shares

    model = run.model
    if model.image_encoder is None or model.text_encoder is None:
        return {"image_share": 1.0 if model.text_encoder is None else 0.0, "emap_gap": None}
    split = run.split_data("test")
    shares = modality_shares(model, run.objective, split, run.preprocess, limit=rows)
    gap = None
    if run.objective.kind != "multilabel":
        gap = emap_split(model, run.objective, split, run.preprocess, limit=rows)["emap_gap"]
    return {"image_share": float(shares["image_share"].mean()), "emap_gap": gap}


def _train_one(spec: RunSpec) -> dict[str, Any]:
    torch.set_num_threads(spec.threads)
    start = time.perf_counter()
    summary = run_training(validate_config(spec.config), spec.run_dir, overwrite=True)
    wall = time.perf_counter() - start
    history = [json.loads(line) for line in (Path(spec.run_dir) / "metrics.jsonl").read_text().splitlines()]
    run = load_run(spec.run_dir)  # once, for the latency and the fusion-use measurements
    temporal = "temporal" in spec.config["model"]  # a video run: its fusion use is not measured (clips, not images)
    return {
        "method": spec.method,
        "seed": spec.seed,
        "test": summary["metrics"]["test"],
        "test_by_kind": summary["metrics"].get("test_by_kind", {}),  # video QA: order vs appearance questions
        "parameters": summary["parameters"],
        "train_seconds": round(sum(r["train_seconds"] for r in history), 2),
        "wall_seconds": round(wall, 2),
        "train_samples_per_s": round(statistics.fmean(r["train_samples_per_s"] for r in history), 1),
        "latency_ms": round(_latency_ms(run), 3),
        **({"image_share": None, "emap_gap": None} if temporal else _fusion_use(run)),
    }


def resolve_methods(names: str, registry=FUSIONS, baselines: tuple[str, ...] = BASELINES) -> list[str]:
    """The methods to compare ("all" or comma-separated names of `registry`), the baselines last and always in."""
    chosen = [n for n in registry.names() if n not in baselines] if names == "all" else names.split(",")
    for name in chosen:
        registry.config_class(name)  # raises ConfigError naming the registered ones
    return [n for n in chosen if n not in baselines] + list(baselines)


def run_comparison(
    base: ClassifyConfig, *, fusions: str, seeds: int, out_dir: Path, jobs: int | None = None,
    temporal: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train every method × seed, aggregate and write compare.{json,md,png} into `out_dir`. The methods are fusions,
    or with `temporal` ("all" or names; video configs) the temporal modules, the order-blind ones as baselines.

    Raises:
        ConfigError: `base` is not a classify (or video) config, or `temporal` is given for a config without video.
    """
    if not isinstance(base, ClassifyConfig):
        raise ConfigError(f"vlfuse compare trains fusions of a classify config; this config is task '{base.task}'")
    if temporal is not None and not hasattr(base.model, "temporal"):
        raise ConfigError(f"--temporal compares the temporal modules of a video config; this config is task "
                          f"'{base.task}'")  # fmt: skip
    cores = available_cores()
    jobs = jobs or min(cores, 2)
    threads, why = choose_threads(share=jobs)  # the free cores, split between the jobs
    log.info("threads per job: %s", why)
    if temporal is not None:
        part, baselines, methods = "temporal", TEMPORAL_BASELINES, resolve_methods(temporal, TEMPORAL_MODULES,
                                                                                   TEMPORAL_BASELINES)  # fmt: skip
    else:
        part, baselines, methods = "fusion", BASELINES, resolve_methods(fusions)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [
        RunSpec(m, s, method_config(base, m, base.seed + s, threads, part), str(out_dir / "runs" / f"{m}-seed{s}"),
                threads)  # fmt: skip
        for m in methods
        for s in range(seeds)
    ]
    start = time.perf_counter()
    if jobs == 1:
        runs = [_train_one(spec) for spec in specs]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(_train_one, specs))
    total = time.perf_counter() - start
    metric = "f1_micro" if base.data.objective == "multilabel" else "accuracy"
    table = aggregate(runs, methods, metric, baselines)
    results = {
        "dataset": base.data.name, "metric": metric, "seeds": seeds, "jobs": jobs, "threads_per_job": threads,
        "total_seconds": round(total, 1), "compared": part, "baselines": list(baselines), "methods": table,
        "runs": runs,
    }  # fmt: skip
    (out_dir / "compare.json").write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / "compare.md").write_text(markdown_table(results) + "\n")
    plot_comparison(results, out_dir / "compare.png")
    return results


def aggregate(
    runs: list[dict[str, Any]], methods: list[str], metric: str, baselines: tuple[str, ...] = BASELINES
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        mean, ci = mean_ci95([r["test"][metric] for r in mine])
        kinds = {k for r in mine for k in r.get("test_by_kind", {})}
        by_kind = {k: mean_ci95([r["test_by_kind"][k] for r in mine]) for k in sorted(kinds)}  # kind → (mean, ci)
        rows.append({
            "method": method, "mean": mean, "ci95": ci, "parameters": mine[0]["parameters"],
            "train_seconds": statistics.fmean(r["train_seconds"] for r in mine),
            "train_samples_per_s": statistics.fmean(r["train_samples_per_s"] for r in mine),
            "latency_ms": statistics.fmean(r["latency_ms"] for r in mine),
            "image_share": _mean_or_none([r.get("image_share") for r in mine]),
            "emap_gap": _mean_or_none([r.get("emap_gap") for r in mine]),
            "by_kind": by_kind,
        })  # fmt: skip
    best_unimodal = max(r["mean"] for r in rows if r["method"] in baselines)
    for row in rows:
        row["gain_over_best_unimodal"] = row["mean"] - best_unimodal
    return rows


def _mean_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _points(value: float | None, sign: bool = False) -> str:
    return "—" if value is None else f"{100 * value:+.1f}" if sign else f"{100 * value:.0f}"


def _ci(value: tuple[float, float] | None) -> str:
    return "—" if value is None else f"{100 * value[0]:.2f} ± {100 * value[1]:.2f}"


def temporal_table(results: dict[str, Any]) -> str:
    """The markdown table of a comparison of temporal modules: overall, order-dependent and appearance accuracy."""
    metric, jobs, threads = results["metric"], results["jobs"], results["threads_per_job"]
    lines = [
        f"Test {metric} on `{results['dataset']}` per temporal module, mean ± 95 % CI over {results['seeds']} seed(s); "
        f"{jobs} parallel job(s) × {threads} thread(s), total {results['total_seconds']:.0f} s. Order-blind baselines: "
        f"{', '.join(results['baselines'])}.",
        "",
        f"| temporal module | {metric} (%) | order-dependent questions (%) | appearance questions (%) | gain vs best "
        "order-blind (points) | parameters | train time (s) | train samples/s | latency (ms/sample) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["methods"], key=lambda r: -r["mean"]):
        kinds = r.get("by_kind", {})
        cost = f"{r['parameters']:,} | {r['train_seconds']:.0f} | {r['train_samples_per_s']:,.0f}"
        lines.append(f"| {r['method']} | {_ci((r['mean'], r['ci95']))} | {_ci(kinds.get('order'))} | "
                     f"{_ci(kinds.get('appearance'))} | {100 * r['gain_over_best_unimodal']:+.2f} | {cost} | "
                     f"{r['latency_ms']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def markdown_table(results: dict[str, Any]) -> str:
    if results.get("compared") == "temporal":
        return temporal_table(results)
    metric, jobs, threads = results["metric"], results["jobs"], results["threads_per_job"]
    lines = [
        f"Test {metric} on `{results['dataset']}`, mean ± 95 % CI over {results['seeds']} seed(s); "
        f"{jobs} parallel job(s) × {threads} thread(s), total {results['total_seconds']:.0f} s.",
        "",
        f"| method | {metric} (%) | gain vs best unimodal (points) | parameters | train time (s) | train samples/s "
        "| latency (ms/sample) | image share (%) | EMAP gap (points) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["methods"], key=lambda r: -r["mean"]):
        score = f"{100 * r['mean']:.2f} ± {100 * r['ci95']:.2f}"
        gain = f"{100 * r['gain_over_best_unimodal']:+.2f}"
        cost = f"{r['parameters']:,} | {r['train_seconds']:.0f} | {r['train_samples_per_s']:,.0f}"
        use = f"{_points(r.get('image_share'))} | {_points(r.get('emap_gap'), sign=True)}"
        lines.append(f"| {r['method']} | {score} | {gain} | {cost} | {r['latency_ms']:.2f} | {use} |")
    lines += ["", "Image share: the image's part of the exact image-vs-text Shapley split of the predicted label's "
              "probability (mean over 2,000 test rows). EMAP gap: accuracy minus that of the model's best additive "
              "projection (Hessel & Lee 2020) — near 0 means the method's cross-modal interactions add nothing."]
    return "\n".join(lines)


def plot_comparison(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results["methods"], key=lambda r: r["mean"])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.5))
    baselines = results.get("baselines", BASELINES)
    colors = ["tab:gray" if r["method"] in baselines else "tab:blue" for r in rows]
    ax.barh([r["method"] for r in rows], [100 * r["mean"] for r in rows], xerr=[100 * r["ci95"] for r in rows],
            color=colors, capsize=3)  # fmt: skip
    ax.set(xlabel=f"test {results['metric']} (%)", title=f"{results['dataset']}: {results['seeds']} seed(s), 95 % CI")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
