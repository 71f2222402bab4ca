"""The run report: learning curves and confusion matrix as PNGs, and report.md that cites them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def plot_learning_curves(history: list[dict[str, Any]], path: Path, monitor: str) -> None:
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    ax_loss.plot(epochs, [r.get("val_loss") for r in history], marker="o", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [r.get(f"val_{monitor}") for r in history], marker="o", color="tab:green")
    ax_metric.set(xlabel="epoch", ylabel=monitor, title=f"Validation {monitor}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(matrix: torch.Tensor, label_names: list[str], path: Path, title: str) -> None:
    k = len(label_names)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(k), label_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), label_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    peak = float(matrix.max()) or 1.0
    if k <= 20:
        for i in range(k):
            for j in range(k):
                value = int(matrix[i, j])
                if value:
                    color = "white" if value > peak / 2 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _metrics_table(metrics: dict[str, dict[str, float]]) -> list[str]:
    keys = sorted({k for m in metrics.values() for k in m})
    lines = ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for split, values in metrics.items():
        cells = [f"{values[k]:.4f}" if isinstance(values.get(k), float) else str(values.get(k, "")) for k in keys]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def write_report(
    run_dir: Path,
    *,
    title: str,
    summary: dict[str, Any],
    metrics: dict[str, dict[str, float]],
    history: list[dict[str, Any]],
    issues: list[Any],
    plots: list[tuple[str, str]],
) -> Path:
    """report.md: summary, metrics per split, plots (caption, relative path), skipped rows."""
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items()]
    lines += ["", "## Metrics", "", *_metrics_table(metrics), ""]
    if history:
        lines += [
            "## Training history",
            "",
            "| epoch | train loss | val loss | lr | samples/s |",
            "|---|---|---|---|---|",
        ]
        for r in history:
            lines.append(
                f"| {r['epoch']} | {r['train_loss']:.4f} | {r.get('val_loss', float('nan')):.4f} | "
                f"{r['lr']:.2e} | {r['train_samples_per_s']:.0f} |"
            )
        lines.append("")
    for caption, rel in plots:
        lines += [f"## {caption}", "", f"![{caption}]({rel})", ""]
    lines += ["## Data issues", ""]
    if issues:
        lines.append(f"{len(issues)} row(s) were skipped (data.on_error=skip). First {min(len(issues), 20)}:")
        lines.append("")
        lines += [f"- {issue}" for issue in issues[:20]]
    else:
        lines.append("No rows were skipped.")
    path = Path(run_dir) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
