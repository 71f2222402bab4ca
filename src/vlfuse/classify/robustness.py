"""Robustness of a trained run: its primary metric with each modality removed and under corrupted inputs.

Conditions (every random choice is seeded, so a report is reproducible):
    complete                the split as is
    image missing           every row's image replaced by the model's placeholder (models reading both modalities)
    text missing            likewise for the text
    image noise σ=0.1/0.3   gaussian noise added to the [0, 1] pixels
    image blur              gaussian blur, σ = 2 px per 64 px of image size
    image occlusion 25%     one random square covering 25 % of the image area, filled with black
    text word drop 30%      each word dropped with probability 0.3
    text word shuffle       the words of each text in random order
    text typos 20%          two adjacent characters swapped in 20 % of the words (of ≥ 2 characters)
Image corruptions act on the stored uint8 images, before normalisation; text corruptions on the raw texts, which
are then re-encoded with the run's tokenizer. Conditions for a modality the model does not read are left out.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vlfuse.classify.evaluate import evaluate_split
from vlfuse.data.splits import SplitData

if TYPE_CHECKING:
    from vlfuse.classify.run import ClassifyRun
    from vlfuse.data.text import TextTokenizer

log = logging.getLogger(__name__)

SEP = " [SEP] "  # how SplitData.texts joins the text columns of a row


def corrupt_images(images: Tensor, kind: str, *, seed: int, sigma: float = 0.1, area: float = 0.25) -> Tensor:
    """A corrupted copy of uint8 images (M, C, H, W): kind is "noise" (σ on [0, 1]), "blur" or "occlusion"."""
    from kornia.filters import gaussian_blur2d

    gen = torch.Generator().manual_seed(seed)
    x = images.float() / 255.0  # (M, C, H, W) in [0, 1]
    m, _, h, w = x.shape
    if kind == "noise":
        x = x + sigma * torch.randn(x.shape, generator=gen)  # (M, C, H, W)
    elif kind == "blur":
        s = 2.0 * h / 64
        k = 2 * math.ceil(3 * s) + 1
        x = gaussian_blur2d(x, (k, k), (s, s))  # (M, C, H, W)
    elif kind == "occlusion":
        side_h, side_w = round(h * math.sqrt(area)), round(w * math.sqrt(area))
        top = torch.randint(0, h - side_h + 1, (m, 1, 1, 1), generator=gen)  # (M, 1, 1, 1)
        left = torch.randint(0, w - side_w + 1, (m, 1, 1, 1), generator=gen)  # (M, 1, 1, 1)
        rows, cols = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
        inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)  # (M, 1, H, W)
        x = x.masked_fill(inside, 0.0)  # (M, C, H, W)
    else:
        raise ValueError(f"unknown image corruption '{kind}'; expected noise, blur or occlusion")
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)  # (M, C, H, W)


def _swap_adjacent(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def corrupt_text(text: str, kind: str, rng: random.Random, *, p: float = 0.3) -> str:
    """One corrupted text: kind is "drop" (each word with probability p), "shuffle" or "typos" (fraction p)."""
    words = text.split()
    if kind == "drop":
        words = [w for w in words if rng.random() >= p]
    elif kind == "shuffle":
        rng.shuffle(words)
    elif kind == "typos":
        words = [_swap_adjacent(w, rng) if len(w) >= 2 and rng.random() < p else w for w in words]
    else:
        raise ValueError(f"unknown text corruption '{kind}'; expected drop, shuffle or typos")
    return " ".join(words)


def corrupt_texts(texts: list[str], kind: str, *, seed: int, p: float = 0.3) -> list[list[str]]:
    """Corrupt each row's text, column by column (columns are joined with ' [SEP] ' in SplitData.texts)."""
    rng = random.Random(seed)
    return [[corrupt_text(column, kind, rng, p=p) for column in row.split(SEP)] for row in texts]


def _with_images(kind: str, **kw: float) -> Callable[[SplitData, Any, int], SplitData]:
    return lambda split, tok, seed: replace(split, images=corrupt_images(split.images, kind, seed=seed, **kw))


def _with_texts(kind: str, **kw: float) -> Callable[[SplitData, Any, int], SplitData]:
    def make(split: SplitData, tokenizer: TextTokenizer, seed: int) -> SplitData:
        ids, mask = tokenizer.encode(corrupt_texts(split.texts, kind, seed=seed, **kw))  # (N, L), (N, L)
        return replace(split, token_ids=ids, token_mask=mask)

    return make


# name → (group, what it does to a split). Group "missing" needs placeholders; "image" / "text" need the modality.
CONDITIONS: dict[str, tuple[str, Callable[[SplitData, Any, int], SplitData]]] = {
    "complete": ("complete", lambda split, tok, seed: split),
    "image missing": ("missing", lambda split, tok, seed: replace(split, images=None, image_index=None)),
    "text missing": ("missing", lambda split, tok, seed: replace(split, token_ids=None, token_mask=None)),
    "image noise σ=0.1": ("image", _with_images("noise", sigma=0.1)),
    "image noise σ=0.3": ("image", _with_images("noise", sigma=0.3)),
    "image blur": ("image", _with_images("blur")),
    "image occlusion 25%": ("image", _with_images("occlusion", area=0.25)),
    "text word drop 30%": ("text", _with_texts("drop", p=0.3)),
    "text word shuffle": ("text", _with_texts("shuffle")),
    "text typos 20%": ("text", _with_texts("typos", p=0.2)),
}


def _applies(group: str, run: ClassifyRun, split: SplitData) -> bool:
    model = run.model
    if group == "missing":
        return getattr(model, "placeholders", None) is not None
    if group == "image":
        return model.image_encoder is not None and split.images is not None
    if group == "text":
        return model.text_encoder is not None and split.token_ids is not None and run.tokenizer is not None
    return True


def evaluate_robustness(
    run: ClassifyRun, split: str = "test", *, seed: int = 0, write: bool = True
) -> list[dict[str, Any]]:
    """Score `run` on one split under every applicable condition.

    Returns:
        One row per condition: {"condition", "group", "metric" (the task's primary metric), "value",
        "drop_points" (complete minus this condition, in percentage points)}, "complete" first.
        With write=True also robustness.json, robustness.md and plots/robustness.png in the run directory.
    """
    data = run.split_data(split)
    metric = run.objective.primary_metric
    device = next(run.model.parameters()).device
    placeholders = getattr(run.model, "placeholders", None)
    if placeholders is not None and not placeholders.learned:
        log.warning("this run was trained without modality dropout: the missing-modality rows use an untrained "
                    "placeholder (retrain with model.modality_dropout > 0 for a learned one)")  # fmt: skip
    rows: list[dict[str, Any]] = []
    for name, (group, make) in CONDITIONS.items():
        if not _applies(group, run, data):
            continue
        metrics, _ = evaluate_split(run.model, make(data, run.tokenizer, seed), run.objective, run.preprocess,
                                    batch_size=run.cfg.train.eval_batch_size, device=device)  # fmt: skip
        value = float(metrics[metric])
        complete = rows[0]["value"] if rows else value
        rows.append({"condition": name, "group": group, "metric": metric, "value": value,
                     "drop_points": round(100.0 * (complete - value), 2)})  # fmt: skip
    if write:
        summary = {
            "split": split,
            "metric": metric,
            "seed": seed,
            "samples": len(data),
            "modality_dropout": run.cfg.model.modality_dropout,
            "rows": rows,
        }
        write_robustness(run.path, summary)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    metric = rows[0]["metric"] if rows else "metric"
    lines = [f"| condition | {metric} | drop vs complete (points) |", "|---|---|---|"]
    lines += [f"| {r['condition']} | {r['value']:.4f} | {r['drop_points']:+.2f} |" for r in rows]
    return lines


def write_robustness(run_dir: Path, summary: dict[str, Any]) -> None:
    """robustness.json (the summary), robustness.md (table) and plots/robustness.png (horizontal bars)."""
    run_dir = Path(run_dir)
    rows = summary["rows"]
    (run_dir / "robustness.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    header = [
        f"# Robustness ({summary['split']} split, {summary['samples']} samples)",
        "",
        f"{summary['metric']} with each modality removed and under corrupted inputs (seed {summary['seed']}, "
        f"model.modality_dropout={summary['modality_dropout']}).",
        "",
    ]
    footer = ["", "![robustness](plots/robustness.png)", ""]
    (run_dir / "robustness.md").write_text("\n".join(header + markdown_table(rows) + footer))
    (run_dir / "plots").mkdir(exist_ok=True)
    plot_robustness(rows, run_dir / "plots" / "robustness.png", f"Robustness ({summary['split']})")


def plot_robustness(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"complete": "tab:green", "missing": "tab:red", "image": "tab:blue", "text": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    positions = list(range(len(rows)))[::-1]  # first row on top
    ax.barh(positions, [r["value"] for r in rows], color=[colours[r["group"]] for r in rows])
    ax.set_yticks(positions, [r["condition"] for r in rows])
    if rows:
        ax.axvline(rows[0]["value"], color="black", linestyle="--", linewidth=1)
        for y, r in zip(positions, rows, strict=True):
            ax.text(r["value"], y, f" {r['value']:.3f}", va="center", fontsize=8)
    ax.set(xlim=(0, 1.08), xlabel=rows[0]["metric"] if rows else "", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
