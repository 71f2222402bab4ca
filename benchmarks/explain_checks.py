"""Measured checks of `vlfuse explain` on the default easy-VQA model, and modality shares of fusions.

    python benchmarks/explain_checks.py easy_vqa [--run runs/main]   # pointing game, deletion, randomization,
                                                                     # shares per question type, EMAP, speed
    python benchmarks/explain_checks.py fashion_pairs               # shares + EMAP of product, bilinear, tensor,
                                                                     # film, late on fashion-mnist-pairs (trains them)

easy_vqa needs a trained default run (`vlfuse train configs/easy_vqa.yaml --run-dir runs/main`, or `make main`).
Question types come from the true answer: a colour, a shape, or yes/no. The pointing game counts, over colour and shape
questions, maps whose maximum lies on the shape's pixels (those that differ from the flat background); a map of
uniform random values is the baseline. Deletion: removing the map's top 10 % of pixels lowers the predicted label's
probability more than removing a random 10 % (all question types). Randomization: Spearman rank correlation of each
map with the map of a fully re-initialised copy of the model. Speed: medians over examples after a warm-up, in this
process, with the threads `vlfuse` would choose.

Integrated Gradients is reported as drawn (magnitudes, "ig") and signed ("ig_signed": evidence for the label first).

Results: benchmarks/results/explain_checks.json (easy_vqa) and explain_fashion_pairs.json (cited in the README).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def question_type(answer: str) -> str:
    from vlfuse.data.builtin.easy_vqa import COLORS, SHAPES

    return "colour" if answer in COLORS else "shape" if answer in SHAPES else "yes/no"


def easy_vqa(run_dir: str, samples: int, randomization: int, seed: int) -> dict:
    from vlfuse.api import load_run
    from vlfuse.explain import attribution, checks
    from vlfuse.explain.emap import emap_split
    from vlfuse.explain.modality import modality_shapley
    from vlfuse.explain.split import modality_shares, share_report
    from vlfuse.explain.target import prepare_input
    from vlfuse.threads import configure_threads

    threads, why = configure_threads()
    run = load_run(run_dir)
    split = run.split_data("test")
    types = [question_type(run.label_names[int(y)]) for y in split.labels]
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(split.labels), generator=gen)[:samples].tolist()
    random_model = checks.randomized_copy(run.model, seed=seed)
    methods = ("gradcam", "ig")
    tally = {m: {t: {"n": 0, "point": 0, "deletion": 0} for t in ("colour", "shape", "yes/no")}
             for m in (*methods, "ig_signed", "random")}  # fmt: skip
    rho: dict[str, list[float]] = {m: [] for m in (*methods, "ig_signed")}
    seconds: dict[str, list[float]] = {"gradcam_plus_modality": [], "ig_32_steps": []}
    for i, r in enumerate(rows):
        image = split.images[split.image_index[r]]
        text = split.texts[r] if isinstance(split.texts[r], str) else split.texts[r][0]
        x = prepare_input(run, image, text)
        mask = checks.object_mask(x.raw_image)
        kind = types[r]
        start = time.perf_counter()
        heat = {"gradcam": attribution.grad_cam(run.model, run.objective, x.batch, x.target)}
        modality_shapley(run.model, run.objective, x.batch, torch.tensor([x.target]))
        seconds["gradcam_plus_modality"].append(time.perf_counter() - start)
        start = time.perf_counter()
        heat["ig_signed"] = attribution.integrated_gradients(run.model, run.objective, x.batch, x.target, steps=32)[0]
        seconds["ig_32_steps"].append(time.perf_counter() - start)
        heat["ig"] = heat["ig_signed"].abs()  # what `vlfuse explain` draws and checks
        heat["random"] = torch.rand(heat["ig"].shape, generator=gen)
        for method, h in heat.items():
            entry = tally[method][kind]
            entry["n"] += 1
            entry["point"] += checks.peak_inside(h, mask)
            entry["deletion"] += checks.deletion_check(run.model, run.objective, x.batch, x.target, h, seed=r)["passed"]
        if i < randomization:
            for method in methods:
                other = attribution.pixel_map(method, random_model, run.objective, x.batch, x.target)
                rho[method].append(checks.spearman(heat[method], other.abs() if method == "ig" else other))
                if method == "ig":
                    rho["ig_signed"].append(checks.spearman(heat["ig_signed"], other))
    seconds = {k: statistics.median(v[3:]) for k, v in seconds.items()}  # after a warm-up

    def rates(method: str) -> dict:
        t = tally[method]
        pointed = [t["colour"], t["shape"]]
        n_point = sum(e["n"] for e in pointed)
        return {
            "pointing_colour_shape": sum(e["point"] for e in pointed) / n_point,
            "pointing_by_type": {k: e["point"] / e["n"] for k, e in t.items() if e["n"]},
            "deletion_all": sum(e["deletion"] for e in t.values()) / sum(e["n"] for e in t.values()),
            "deletion_by_type": {k: e["deletion"] / e["n"] for k, e in t.items() if e["n"]},
            "examples": {k: e["n"] for k, e in t.items()},
        }

    shares = modality_shares(run.model, run.objective, split, run.preprocess)
    groups = {name: question_type(name) for name in run.label_names}
    return {
        "run": run_dir, "threads": threads, "threads_why": why, "machine": platform.processor() or platform.machine(),
        "samples": len(rows), "seed": seed,
        "maps": {m: rates(m) for m in (*methods, "ig_signed", "random")},
        "randomization_spearman": {m: {"mean": statistics.fmean(v), "median": statistics.median(v), "n": len(v)}
                                   for m, v in rho.items()},
        "modality_share": share_report(shares, run.label_names, groups),
        "emap": emap_split(run.model, run.objective, split, run.preprocess),
        "seconds_median": seconds,
    }  # fmt: skip


def fashion_pairs(fusions: list[str], epochs: int, runs_root: Path) -> dict:
    from vlfuse.api import load_run, train
    from vlfuse.config import config_to_dict
    from vlfuse.explain.emap import emap_split
    from vlfuse.explain.split import modality_shares, share_report
    from vlfuse.task import load_config

    base = config_to_dict(load_config("configs/fashion_mnist_pairs.yaml", [f"train.epochs={epochs}"]))
    out = {"config": "configs/fashion_mnist_pairs.yaml", "epochs": epochs, "fusions": {}}
    for fusion in fusions:
        run_dir = runs_root / f"explain-fmp-{fusion}"
        config = json.loads(json.dumps(base))
        config["model"]["fusion"] = {"name": fusion}
        start = time.perf_counter()
        train(config, run_dir=run_dir, overwrite=True)
        run = load_run(run_dir)
        split = run.split_data("test")
        shares = modality_shares(run.model, run.objective, split, run.preprocess)
        report = share_report(shares, run.label_names)
        out["fusions"][fusion] = {
            "test_accuracy": run.metrics["test"]["accuracy"], "train_wall_seconds": round(time.perf_counter() - start),
            "image_share_mean": report["all"]["image_share_mean"], "text_share_mean": report["all"]["text_share_mean"],
            "modality_share": report, "emap": emap_split(run.model, run.objective, split, run.preprocess),
        }  # fmt: skip
        print(fusion, json.dumps({k: v for k, v in out["fusions"][fusion].items() if k != "modality_share"}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["easy_vqa", "fashion_pairs"])
    parser.add_argument("--run", default="runs/main", help="easy_vqa: the trained default run")
    parser.add_argument("--samples", type=int, default=500, help="easy_vqa: test questions explained")
    parser.add_argument("--randomization", type=int, default=100, help="easy_vqa: examples of the randomization test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fusions", default="product,bilinear,tensor,film,late")
    parser.add_argument("--epochs", type=int, default=2, help="fashion_pairs: training epochs per fusion")
    parser.add_argument("--runs-root", type=Path, default=Path("runs"))
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.suite == "easy_vqa":
        result, name = easy_vqa(args.run, args.samples, args.randomization, args.seed), "explain_checks.json"
    else:
        result = fashion_pairs(args.fusions.split(","), args.epochs, args.runs_root)
        name = "explain_fashion_pairs.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "modality_share"}, indent=1)[:4000])


if __name__ == "__main__":
    main()
