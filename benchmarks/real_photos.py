"""Real photos, offline: classifier sanity, zero-shot labels, search, captions and out-of-distribution scores.

    python benchmarks/real_photos.py [--runs runs] [--out benchmarks/results]

Needs the shipped runs "photo" and "easy-vqa-bridge", foolbox's 20 ImageNet photos, Tux Paint's stamps, and for the
trained routes runs/bridge_tuxpaint (`make shipped-photo`) and runs/lit_tuxpaint (`vlfuse train
configs/retrieval_tuxpaint_lit.yaml --run-dir runs/lit_tuxpaint`). Writes real_photos.json and
real_photos_samples.png.

Caption rule: a caption names the object when it contains the head noun of the stamp's own caption (its object
phrase's last word: "A pickup truck." → "truck"), singular or plural alike (`vlfuse.bridge.metrics.names_attributes`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import vlfuse
from vlfuse.bridge.metrics import caption_scores, names_attributes
from vlfuse.data.captions import captioned_images
from vlfuse.data.images import load_images
from vlfuse.data.vocab import imagenet_names
from vlfuse.retrieval.search import zeroshot

DETECTORS = {"FeatureDensity": "feature density (PCA Mahalanobis + residual)",
             "ConfidenceDetector": "ImageNet classifier confidence (1 − max softmax)"}


def foolbox_photos() -> tuple[list[str], list[int]]:
    folder = Path(next(iter(importlib.util.find_spec("foolbox").submodule_search_locations))) / "data"
    files = sorted(folder.glob("imagenet_*.jpg"))
    return [str(f) for f in files], [int(f.stem.split("_")[2]) for f in files]


def classifier_and_conse(photo, files, classes) -> dict:
    images = photo.load_images(files)
    probs = photo.class_probabilities(images)  # (20, 1000)
    top5 = probs.topk(5, dim=1).indices
    names = imagenet_names()
    conse = zeroshot(photo, labels=names, templates=["a photo of a {}."], images=files)
    picked = [names.index(label) for _, label, _ in conse.predictions]
    top1 = [int(t[0]) == c for t, c in zip(top5, classes, strict=True)]
    in_top5 = [c in t.tolist() for t, c in zip(top5, classes, strict=True)]
    return {"photos": len(files), "classifier_top1": float(np.mean(top1)), "classifier_top5": float(np.mean(in_top5)),
            "conse_1000_names_top1": float(np.mean([p == c for p, c in zip(picked, classes, strict=True)]))}


def ood_auroc(scores_in: list[float], scores_out: list[float]) -> float:
    return float(roc_auc_score([0] * len(scores_in) + [1] * len(scores_out), scores_in + scores_out))


def ood(photo, bridge, files, tux_test) -> dict:
    from easy_vqa import get_test_image_paths

    easy = [get_test_image_paths()[i] for i in range(1000)]

    def verdicts(run, images, batch=64):
        return [v for i in range(0, len(images), batch) for v in run.ood_verdicts(images[i : i + batch])]

    size = bridge.cfg.data.image_size
    easy_b = verdicts(bridge, load_images(easy, size=size)[0])
    photos_b = verdicts(bridge, bridge.load_images(files))
    tux_b = verdicts(bridge, torch.nn.functional.interpolate(tux_test.float(), size=size, mode="bilinear",
                                                              antialias=True).round().clamp(0, 255).byte())  # fmt: skip
    real = photos_b + tux_b
    photo_easy = verdicts(photo, load_images(easy[:300], size=224)[0])
    photo_real = verdicts(photo, photo.load_images(files)) + verdicts(photo, tux_test)
    out = {}
    for name in ("photo-bridge",):  # a bridge trained on Tux Paint: its feature density on easy-VQA vs real photos
        other = vlfuse.load_run(name)
        s = other.cfg.data.image_size
        own = verdicts(other, other.load_images(files)) + verdicts(other, tux_test)
        easy_o = verdicts(other, load_images(easy[:300], size=s)[0])
        out[name.replace("-", "_")] = {
            "auroc_real_photos_vs_easy_vqa": ood_auroc([v.score for v in own], [v.score for v in easy_o]),
            "flagged_real_photos": float(np.mean([v.far for v in own])),
            "flagged_easy_vqa": float(np.mean([v.far for v in easy_o])), "threshold": other.ood.threshold,
            "detector": DETECTORS[type(other.ood).__name__]}  # fmt: skip
    return out | {
        "easy_vqa_bridge": {
            "auroc_easy_vqa_test_vs_real_photos": ood_auroc([v.score for v in easy_b], [v.score for v in real]),
            "flagged_easy_vqa_test": float(np.mean([v.far for v in easy_b])), "easy_vqa_images": len(easy_b),
            "flagged_real_photos": float(np.mean([v.far for v in real])), "real_photos": len(real),
            "threshold": bridge.ood.threshold, "detector": DETECTORS[type(bridge.ood).__name__]},
        "photo": {
            "auroc_real_photos_vs_easy_vqa": ood_auroc([v.score for v in photo_real], [v.score for v in photo_easy]),
            "flagged_real_photos": float(np.mean([v.far for v in photo_real])),
            "flagged_easy_vqa": float(np.mean([v.far for v in photo_easy])),
            "threshold": photo.ood.threshold, "detector": DETECTORS[type(photo.ood).__name__]},
    }  # fmt: skip


def timings(photo, files) -> dict:
    cold = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vlfuse.cli", "zeroshot", "photo", files[0], "--labels",
                        "cat,car,coffee"], check=True, capture_output=True)  # fmt: skip
        cold.append(time.perf_counter() - started)
    zeroshot(photo, labels=["cat", "car", "coffee"], images=files[:1])  # label embeddings remembered
    warm = []
    for _ in range(20):
        started = time.perf_counter()
        zeroshot(photo, labels=["cat", "car", "coffee"], images=files[:1])
        warm.append(time.perf_counter() - started)
    return {"cold_shell_s": {"median": statistics.median(cold), "min": min(cold), "max": max(cold), "runs": 5},
            "warm_ms": {"median": 1000 * statistics.median(warm), "min": 1000 * min(warm),
                        "max": 1000 * max(warm), "runs": 20}}  # fmt: skip


def captions(photo, tux, bridge_dir: Path) -> tuple[dict, list[str]]:
    objects = [a["object"] for a in tux.attributes]
    started = time.perf_counter()
    socratic = [c for i in range(0, len(tux), 16) for c in photo.caption(tux.images[i : i + 16])]
    seconds = time.perf_counter() - started
    named = [names_attributes(c, {"object": o}) for c, o in zip(socratic, objects, strict=True)]
    out = {"socratic": {"names_object": float(np.mean(named)), "images": len(tux), "generation_seconds": seconds,
                        **caption_scores(socratic, [[c[0]] for c in tux.captions])}}  # fmt: skip
    metrics = bridge_dir / "metrics.json"
    if metrics.is_file():
        test = json.loads(metrics.read_text())["test"]["caption"]
        out["photo_bridge"] = {"names_object": test["accuracy"], "images": test["samples"], "bleu4": test["bleu4"],
                               "cider": test["cider"], "rouge_l": test["rouge_l"]}  # fmt: skip
    return out, socratic


def sample_sheet(tux, socratic: list[str], bridge_captions: list[str] | None, seen, out: Path) -> None:
    import matplotlib.pyplot as plt

    picks = np.linspace(0, len(tux) - 1, 8).round().astype(int)
    fig, axes = plt.subplots(2, 4, figsize=(16, 9))
    for ax, i in zip(axes.flat, picks, strict=True):
        ax.imshow(tux.images[i].permute(1, 2, 0).numpy())
        ax.axis("off")
        lines = [f"truth: {tux.captions[i][0]}", f"sees: {seen[i][0][0]} ({100 * seen[i][0][1]:.0f} %)",
                 f"socratic: {socratic[i][:60]}"]  # fmt: skip
        if bridge_captions:
            lines.append(f"photo-bridge: {bridge_captions[i][:60]}")
        ax.set_title("\n".join(lines), fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    photo, bridge = vlfuse.load_run("photo"), vlfuse.load_run("easy-vqa-bridge")
    files, classes = foolbox_photos()
    tux = captioned_images("tuxpaint", "test", photo.cfg.data)
    results = {"foolbox_imagenet": classifier_and_conse(photo, files, classes),
               "tuxpaint_test": json.loads((Path(photo.path) / "test_metrics.json").read_text())}  # fmt: skip
    lit = args.runs / "lit_tuxpaint" / "test_metrics.json"  # configs/retrieval_tuxpaint_lit.yaml
    if lit.is_file():
        results["tuxpaint_test"]["lit"] = json.loads(lit.read_text())["test"]
    results["ood"] = ood(photo, bridge, files, tux.images)
    results["zeroshot_latency"] = timings(photo, files)
    results["captions"], socratic = captions(photo, tux, args.runs / "bridge_tuxpaint")
    bridge_captions = None
    if (args.runs / "bridge_tuxpaint" / "bridge.safetensors").is_file():
        photo_bridge = vlfuse.load_run(args.runs / "bridge_tuxpaint")
        bridge_captions = [c for i in range(0, len(tux), 16) for c in photo_bridge.caption(tux.images[i : i + 16])]
    seen = [s for i in range(0, len(tux), 32) for s in photo.seen(tux.images[i : i + 32])]
    args.out.mkdir(parents=True, exist_ok=True)
    sample_sheet(tux, socratic, bridge_captions, seen, args.out / "real_photos_samples.png")
    (args.out / "real_photos.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
