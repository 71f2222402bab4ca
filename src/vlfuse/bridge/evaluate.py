"""Scoring a bridge: answers (exact match) and captions (BLEU-4, CIDEr, ROUGE-L, attribute naming) generated for
validation rows after each epoch and for the test split at the end — or again later, `vlfuse evaluate RUN` — plus
report.md and plots/samples.png."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from vlfuse.bridge.config import TEST_OBJECTIVES
from vlfuse.bridge.data import BridgeSplit, load_bridge_split
from vlfuse.bridge.generate import generate_texts
from vlfuse.bridge.metrics import answer_accuracy, caption_scores, names_attributes
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.features import cached_features


def generate_rows(model, cfg, visual: torch.Tensor, rows, batch_size: int) -> list[str]:
    """Greedy (the run's generation settings) texts for `rows`, whose images' visual tokens are `visual` (M, N, D)."""
    out: list[str] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = rows.select(range(start, min(start + batch_size, len(rows))))
        out += generate_texts(model, visual[chunk.image_index], chunk.prompts, cfg.generation)
    model.train(was_training)
    return out


def split_features(encoder: torch.nn.Module, split: BridgeSplit, cfg) -> torch.Tensor:
    """The visual tokens (M, N, D) of every image of `split`, through the on-disk feature cache."""
    return cached_features(encoder, split.images, ImagePreprocessor(cfg.data, augment=False)).tokens


def write_test_results(
    run_dir: Path, cfg, model, encoder, summary: dict[str, Any], objectives=TEST_OBJECTIVES
) -> dict[str, Any]:
    """Score `objectives` on the test split into summary["test"]; write metrics.json, report.md and
    plots/samples.png."""
    test = load_bridge_split(cfg.data, "test", cfg.caption_prompt, n_templates=cfg.caption_templates)
    visual = split_features(encoder, test, cfg)
    generated: dict[str, list[str]] = {}
    summary.setdefault("test", {}).update(evaluate_test(model, cfg, test, visual, objectives, generated))
    samples = report_samples(model, cfg, test, visual, generated=generated)
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    write_bridge_report(run_dir, cfg, summary, samples, test)
    return summary


def evaluate_stage(model, cfg, split: BridgeSplit, visual, rows: dict[str, Any]) -> dict[str, float]:
    """Validation metrics of a stage; a mixed stage reports each objective's metrics prefixed with its name and monitors
    the mean of their accuracies (answer exact match, caption attribute naming)."""
    if len(rows) == 1:
        ((objective, objective_rows),) = rows.items()
        return evaluate_rows(model, cfg, split, visual, objective_rows, objective)
    metrics: dict[str, float] = {}
    for objective, objective_rows in rows.items():
        got = evaluate_rows(model, cfg, split, visual, objective_rows, objective)
        metrics.update({f"{objective}_{k}": v for k, v in got.items()})
    metrics["accuracy"] = sum(metrics[f"{objective}_accuracy"] for objective in rows) / len(rows)
    return metrics


def evaluate_rows(model, cfg, split: BridgeSplit, visual, rows, objective: str) -> dict[str, float]:
    """Greedy generation on `rows`: answer accuracy (vqa), or caption metrics + attribute naming (caption: one
    caption per image, scored against all of the image's reference captions among `rows`)."""
    generate_for = rows if objective == "vqa" else rows.one_per_image()
    predictions = generate_rows(model, cfg, visual, generate_for, cfg.eval.batch_size)
    if objective == "vqa":
        return answer_accuracy(predictions, rows.targets)
    return caption_metrics(predictions, generate_for, split, references=rows)


def caption_metrics(predictions: list[str], rows, split: BridgeSplit, references=None) -> dict[str, float]:
    """BLEU-4 / CIDEr / ROUGE-L of the captions generated for `rows` against every reference caption of their
    image (the targets of `references`, default `rows`: all phrasings, e.g. "a red circle", "a red circle on a plain
    background"), and how often a caption names the image's known attributes (colour and shape); `accuracy` is that
    naming rate."""
    references_by_image: dict[int, list[str]] = {}
    refs = references if references is not None else rows
    for image, target in zip(refs.image_index.tolist(), refs.targets, strict=True):
        references_by_image.setdefault(image, []).append(target)
    references = references_by_image
    scores = caption_scores(predictions, [references[i] for i in rows.image_index.tolist()])
    attrs = [split.attributes[i] if split.attributes else {} for i in rows.image_index.tolist()]
    named = [names_attributes(p, a) for p, a in zip(predictions, attrs, strict=True) if a]
    scores["accuracy"] = sum(named) / max(1, len(named))
    return scores


def evaluate_test(
    model, cfg, test: BridgeSplit, visual, objectives=TEST_OBJECTIVES, generated: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Test metrics of `objectives` ("vqa": the questions, up to cfg.eval.test_questions; "caption": one caption per
    image, up to cfg.eval.test_captions images, against all of the image's reference phrasings). The generated texts
    of each objective, in row order, go into `generated` when it is given."""
    metrics: dict[str, Any] = {}
    for objective in objectives:
        rows = test.rows(objective)
        if len(rows) == 0:
            continue
        limit = cfg.eval.test_questions if objective == "vqa" else cfg.eval.test_captions
        generate_for = rows if objective == "vqa" else rows.one_per_image()
        generate_for = generate_for.select(range(min(limit or len(generate_for), len(generate_for))))
        start = time.perf_counter()
        predictions = generate_rows(model, cfg, visual, generate_for, cfg.eval.batch_size)
        seconds = time.perf_counter() - start
        if generated is not None:
            generated[objective] = predictions
        metrics[objective] = (answer_accuracy(predictions, generate_for.targets) if objective == "vqa"
                              else caption_metrics(predictions, generate_for, test, references=rows))  # fmt: skip
        metrics[objective]["generation_seconds"] = round(seconds, 1)
    return metrics


def report_samples(
    model, cfg, test: BridgeSplit, visual, n: int = 8, generated: dict[str, list[str]] | None = None
) -> dict[str, list]:
    """The first `n` test rows of each objective with their generated text, for the report:
    (image, prompt, reference, generated). Where `evaluate_test` generated an objective's texts (`generated`, from
    the same first rows), those are shown — at most as many as it scored — instead of generating again."""
    samples: dict[str, list] = {}
    for objective in TEST_OBJECTIVES:
        rows = test.rows(objective) if objective == "vqa" else test.rows(objective).one_per_image()
        done = (generated or {}).get(objective, [])
        rows = rows.select(range(min(n, len(rows), len(done) or n)))
        if len(rows):
            predictions = done[: len(rows)] if done else generate_rows(model, cfg, visual, rows, cfg.eval.batch_size)
            rows_with_text = zip(rows.image_index.tolist(), rows.prompts, rows.targets, predictions, strict=True)
            samples[objective] = [(int(i), p, t, g) for i, p, t, g in rows_with_text]
    return samples


def write_bridge_report(run_dir: Path, cfg, summary: dict, samples: dict[str, list], test: BridgeSplit) -> None:
    """report.md with the metrics and generated samples, and plots/samples.png (images with their generated text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = cfg.data.name or cfg.data.path
    lines = [f"# Bridge run: {cfg.model.language_model} + {cfg.model.image_encoder.name} on {data}",
             "", f"Training: {summary['train_seconds']} s ({summary['trainable_parameters']:,} trainable parameters, "
             f"{summary['weights_bytes'] / 1e6:.1f} MB of weights).", ""]  # fmt: skip
    for stage in summary["stages"]:
        objective = stage.get("objective", stage.get("task"))  # runs trained before the task registry say "task"
        lines.append(f"- stage {objective}: {stage['epochs']} epoch(s), best val accuracy "
                     f"{stage['best_val_accuracy']:.4f}, {stage['seconds']} s")  # fmt: skip
    lines += ["", "## Test", "", "```json", json.dumps(summary["test"], indent=1), "```", "", "## Samples", ""]
    shown = [s for objective in ("vqa", "caption") for s in samples.get(objective, [])[:4]]
    lines += ["| image | prompt | reference | generated |", "|---|---|---|---|"]
    lines += [f"| {test.image_sources[i]} | {p} | {t} | {g} |" for i, p, t, g in shown]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")
    if shown:
        (run_dir / "plots").mkdir(exist_ok=True)
        fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.8))
        for ax, (i, p, _, g) in zip(list(getattr(axes, "flat", [axes])), shown, strict=True):
            image = test.images[i].permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
            ax.set_title(f"{p[:28]}\n→ {g[:28]}", fontsize=7)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(run_dir / "plots" / "samples.png", dpi=110)
        plt.close(fig)
