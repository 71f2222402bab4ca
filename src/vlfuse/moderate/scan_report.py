"""The summary of a scan output (decisions.jsonl), read in one streaming pass: counts per decision and label,
score histograms, image grids per decision, and — where the items carry true labels — the worst false positives
and false negatives per label. Written as `<out>.report/` (report.md, summary.json, PNGs)."""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlfuse.moderate.policy import DECISIONS

BINS = 20
GRID = 8  # images per decision grid
WORST = 8  # worst false positives / negatives listed per label


def report_dir(out: Path) -> Path:
    return out.with_name(out.name + ".report")


def summarize(out: Path, labels: list[str]) -> dict[str, Any]:
    """Counts, histograms, per-decision samples and worst errors from a scan output, streaming."""
    decisions: Counter[str] = Counter()
    flagged: dict[str, Counter[str]] = {name: Counter() for name in labels}
    histograms = {name: np.zeros(BINS, dtype=np.int64) for name in labels}
    samples: dict[str, list[dict[str, Any]]] = {d: [] for d in (*DECISIONS, "error")}
    worst_fp: dict[str, list] = {name: [] for name in labels}
    worst_fn: dict[str, list] = {name: [] for name in labels}
    errors: list[str] = []
    labelled = 0
    with open(out) as f:
        for line in f:
            record = json.loads(line)
            decision = record["decision"]
            decisions[decision] += 1
            if len(samples[decision]) < GRID:
                samples[decision].append({k: record.get(k) for k in ("item", "id", "image", "error")})
            if decision == "error":
                if len(errors) < 20:
                    errors.append(record["error"])
                continue
            truth = record.get("truth")
            labelled += truth is not None
            for name, verdict in record["labels"].items():
                p = verdict["probability"]
                flagged[name][verdict["decision"]] += 1
                histograms[name][min(int(p * BINS), BINS - 1)] += 1
                if truth is None:
                    continue
                entry = {"item": record["item"], "id": record["id"], "image": record.get("image"), "p": p}
                if name in truth:  # a missed positive: lowest scores are the worst
                    heapq.heappush(worst_fn[name], (-p, record["item"], entry))
                    if len(worst_fn[name]) > WORST:
                        heapq.heappop(worst_fn[name])
                else:  # a negative: highest scores are the worst
                    heapq.heappush(worst_fp[name], (p, record["item"], entry))
                    if len(worst_fp[name]) > WORST:
                        heapq.heappop(worst_fp[name])
    return {
        "items": sum(decisions.values()), "labelled": labelled, "decisions": dict(decisions),
        "label_decisions": {k: dict(v) for k, v in flagged.items()},
        "histograms": {k: v.tolist() for k, v in histograms.items()}, "samples": samples, "errors": errors,
        "worst_false_positives": {k: [e for _, _, e in sorted(v, key=lambda t: -t[0])] for k, v in worst_fp.items()},
        "worst_false_negatives": {k: [e for _, _, e in sorted(v, key=lambda t: t[0])] for k, v in worst_fn.items()},
    }  # fmt: skip


def _grid(images: list[Image.Image], path: Path, cell: int = 84) -> None:
    sheet = Image.new("RGB", (cell * max(1, len(images)), cell), "white")
    for i, im in enumerate(images):
        sheet.paste(im.convert("RGB").resize((cell - 4, cell - 4)), (i * cell + 2, 2))
    sheet.save(path)


def write_scan_report(out: Path, labels: list[str], image_of: Callable[[dict[str, Any]], Image.Image | None]) -> Path:
    """Summarize a scan output into `<out>.report/`; `image_of(sample)` gives a sample's image (None: unavailable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = report_dir(out)
    folder.mkdir(exist_ok=True)
    summary = summarize(out, labels)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3), squeeze=False)
    edges = np.linspace(0, 1, BINS + 1)
    for ax, name in zip(axes[0], labels, strict=True):
        ax.bar(edges[:-1], summary["histograms"][name], width=1 / BINS, align="edge")
        ax.set(title=name, xlabel="calibrated probability", ylabel="items", yscale="log")
    fig.tight_layout()
    fig.savefig(folder / "histograms.png", dpi=80)
    plt.close(fig)
    lines = [f"# Scan summary: {out.name}", "", f"{summary['items']:,} items ({summary['labelled']:,} with true "
             "labels).", "", "| decision | items |", "|---|---|"]  # fmt: skip
    lines += [f"| {d} | {summary['decisions'].get(d, 0):,} |" for d in (*DECISIONS, "error")]
    lines += ["", "| label | " + " | ".join(DECISIONS) + " |", "|---|" + "---|" * len(DECISIONS)]
    lines += [f"| {n} | " + " | ".join(f"{summary['label_decisions'][n].get(d, 0):,}" for d in DECISIONS) + " |"
              for n in labels]  # fmt: skip
    lines += ["", "![score histograms](histograms.png)", ""]
    for decision, samples in summary["samples"].items():
        images = [im for im in (image_of(s) for s in samples) if im is not None]
        if images:
            _grid(images, folder / f"grid_{decision}.png")
            lines += [f"**{decision}** (first {len(images)}):", "", f"![{decision}](grid_{decision}.png)", ""]
    for kind, key in (("false positives", "worst_false_positives"), ("false negatives", "worst_false_negatives")):
        for name, entries in summary[key].items():
            if entries:
                lines += [f"Worst {kind} for **{name}**: " + ", ".join(f"`{e['id']}` ({e['p']:.3f})" for e in entries),
                          ""]  # fmt: skip
    if summary["errors"]:
        lines += ["Errors (first 20):", ""] + [f"- {e}" for e in summary["errors"]] + [""]
    (folder / "report.md").write_text("\n".join(lines))
    return folder
