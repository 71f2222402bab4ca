"""Training and evaluating a bridge: `vlfuse train` on a config with `task: bridge`.

Stages run in order (LLaVA-style): typically caption alignment (the projector learns to put "a red circle" into
the LM's words), then question answering. Each stage is a `Trainer` run of its own in `stages/<i>-<task>/` (atomic
checkpoints, exact resume); a finished stage is skipped on resume. Visual tokens come from the frozen image encoder
through the on-disk feature cache, so no epoch recomputes them.

Run directory: config.yaml, bridge.safetensors (projector + adapters only), metrics.json, report.md,
plots/samples.png, stages/*/metrics.jsonl.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, SerializeAsAny, field_validator

from vlfuse.config import DataConfig, Section, TrainConfig, save_config
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import ConfigError
from vlfuse.features import cached_features
from vlfuse.lm.bridge import BridgeModel, BridgeModelConfig
from vlfuse.lm.data import BridgeLoader, BridgeSplit, load_bridge_split
from vlfuse.lm.generate import GenerationConfig
from vlfuse.lm.language_model import load_language_model
from vlfuse.lm.metrics import answer_accuracy, caption_scores, names_attributes
from vlfuse.registry import IMAGE_ENCODERS, ComponentConfig
from vlfuse.train.checkpoint import claim_run_dir, load_model_weights, save_model_weights
from vlfuse.train.trainer import BEST_WEIGHTS, MetricsLogger, Trainer

log = logging.getLogger(__name__)


STAGE_TASKS = {"caption": ("caption",), "vqa": ("vqa",), "mixed": ("vqa", "caption")}  # stage → evaluated tasks


class BridgeStage(Section):
    # mixed: question and caption rows together (LLaVA's second stage also keeps caption data), so answering
    # questions does not make the LM forget how to caption
    task: Literal["caption", "vqa", "mixed"]
    rows_per_epoch: int | None = Field(None, ge=1)  # a fresh random subset of the rows each epoch (None: all)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=1, batch_size=32, lr=1e-3))


class BridgeEvalConfig(Section):
    val_fraction: float = Field(0.05, gt=0, lt=0.5)  # of the training images, held out with their rows
    val_rows: int = Field(256, ge=1)  # validation rows generated after each epoch (exact match / captions)
    test_questions: int | None = Field(None, ge=1)  # None: every test question
    test_captions: int | None = Field(None, ge=1)  # None: every test image with a caption
    batch_size: int = Field(64, ge=1)


class BridgeExperimentConfig(Section):
    task: Literal["bridge"] = "bridge"
    seed: int = 0
    data: DataConfig = Field(default_factory=lambda: DataConfig(name="easy-vqa"))
    image_encoder: SerializeAsAny[ComponentConfig] = Field(
        default_factory=lambda: IMAGE_ENCODERS.parse({"name": "efficientnet_lite0", "resolution": 128}, "image_encoder")
    )
    bridge: BridgeModelConfig = Field(default_factory=BridgeModelConfig)
    stages: list[BridgeStage] = Field(min_length=1)
    caption_prompt: str = "Describe the image."
    caption_templates: int = Field(3, ge=1)  # easy-VQA caption phrasings per image in training
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(max_new_tokens=16))
    eval: BridgeEvalConfig = Field(default_factory=BridgeEvalConfig)

    @field_validator("image_encoder", mode="before")
    @classmethod
    def _image_encoder(cls, v: Any) -> Any:
        return IMAGE_ENCODERS.parse(v, "image_encoder")

    @field_validator("image_encoder")
    @classmethod
    def _frozen(cls, v: ComponentConfig) -> ComponentConfig:
        if not getattr(v, "frozen", False):
            raise ValueError("the bridge trains on cached features of a frozen encoder: use a pretrained encoder "
                             "with frozen: true (e.g. efficientnet_lite0)")  # fmt: skip
        return v


def build_bridge(cfg: BridgeExperimentConfig) -> tuple[BridgeModel, torch.nn.Module]:
    """The frozen image encoder and the bridge around the pretrained LM (projector and adapters freshly built)."""
    encoder = IMAGE_ENCODERS.build(cfg.image_encoder, in_channels=cfg.data.channels, image_size=cfg.data.image_size)
    lm, tokenizer = load_language_model(cfg.bridge.language_model, cfg.bridge.scratch)
    return BridgeModel(cfg.bridge, lm, tokenizer, visual_dim=encoder.token_dim), encoder.eval()


def split_features(encoder: torch.nn.Module, split: BridgeSplit, cfg: BridgeExperimentConfig) -> torch.Tensor:
    return cached_features(encoder, split.images, ImagePreprocessor(cfg.data, augment=False)).tokens  # (M, N, D)


def train_bridge(
    cfg: BridgeExperimentConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Train every stage, evaluate on the test split, write the run directory; returns the metrics summary."""
    run_dir = Path(run_dir)
    claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()

    model, encoder = build_bridge(cfg)
    full_train = load_bridge_split(cfg.data, "train", cfg.caption_prompt, n_templates=cfg.caption_templates)
    check_stage_tasks(cfg, full_train)
    train, val = full_train.split_by_image(cfg.eval.val_fraction, cfg.seed)
    feature_start = time.perf_counter()
    train_visual, val_visual = split_features(encoder, train, cfg), split_features(encoder, val, cfg)
    feature_seconds = time.perf_counter() - feature_start

    stage_records = []
    for index, stage in enumerate(cfg.stages):
        stage_dir = run_dir / "stages" / f"{index}-{stage.task}"
        done = stage_dir / "done.json"
        if done.is_file():  # finished before an interruption: reuse its best weights
            load_model_weights(model, stage_dir / BEST_WEIGHTS)
            stage_records.append(json.loads(done.read_text()))
            continue
        stage_dir.mkdir(parents=True, exist_ok=True)
        loader = BridgeLoader(train.rows(stage.task), train_visual, model, batch_size=stage.train.batch_size,
                              rows_per_epoch=stage.rows_per_epoch, seed=cfg.seed + index)  # fmt: skip
        val_rows = {task: val.rows(task).select(range(min(cfg.eval.val_rows, len(val.rows(task)))))
                    for task in STAGE_TASKS[stage.task]}  # fmt: skip

        def evaluate_fn(m: torch.nn.Module, rows=val_rows) -> dict[str, float]:
            return evaluate_stage(m, encoder, cfg, val, val_visual, rows)

        trainer = Trainer(
            model=model, train_loader=loader, loss_fn=lambda m, b: m.loss(b), evaluate_fn=evaluate_fn,
            monitor="accuracy", cfg=stage.train, run_dir=stage_dir, device=torch.device("cpu"),
            callbacks=[MetricsLogger(stage_dir, stage.train.log_every)],
        )  # fmt: skip
        if resume and (stage_dir / "checkpoints").exists():
            trainer.resume()
        stage_start = time.perf_counter()
        state = trainer.fit()
        load_model_weights(model, stage_dir / BEST_WEIGHTS)
        record = {"task": stage.task, "epochs": state.epoch, "best_val_accuracy": state.best_metric,
                  "seconds": round(time.perf_counter() - stage_start, 1), "history": state.history}  # fmt: skip
        done.write_text(json.dumps(record, indent=1))
        stage_records.append(record)
    train_seconds = time.perf_counter() - started
    save_model_weights(model, run_dir / "bridge.safetensors", {"format": "vlfuse-bridge"})
    summary = {
        "train_seconds": round(train_seconds, 1),
        "feature_seconds": round(feature_seconds, 1),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "weights_bytes": (run_dir / "bridge.safetensors").stat().st_size,
        "stages": [{k: v for k, v in r.items() if k != "history"} for r in stage_records],
        "test": {},
    }
    return write_test_results(run_dir, cfg, model, encoder, summary, TEST_TASKS)


TEST_TASKS = ("vqa", "caption")


def write_test_results(run_dir: Path, cfg, model, encoder, summary: dict[str, Any], tasks) -> dict[str, Any]:
    """Score `tasks` on the test split into summary["test"]; write metrics.json, report.md and plots/samples.png."""
    test = load_bridge_split(cfg.data, "test", cfg.caption_prompt, n_templates=cfg.caption_templates)
    visual = split_features(encoder, test, cfg)
    summary.setdefault("test", {}).update(evaluate_test(model, encoder, cfg, test, visual, tasks))
    samples = report_samples(model, encoder, cfg, test, visual)
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    write_bridge_report(run_dir, cfg, summary, samples, test)
    return summary


def evaluate_bridge_run(run_dir: str | Path, tasks=TEST_TASKS) -> dict[str, Any]:
    """Re-score a trained bridge run on the test split (`vlfuse evaluate RUN`): updates the `test` section of its
    metrics.json for `tasks` (keeping the rest) and rewrites its report; returns the summary."""
    from vlfuse.lm.run import BridgeRun

    run = BridgeRun.load(run_dir)
    metrics_file = run.run_dir / "metrics.json"
    summary = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return write_test_results(run.run_dir, run.cfg, run.model, run.encoder, summary, tasks)


def _generate_rows(model, encoder, cfg, split: BridgeSplit, visual, rows, batch_size: int) -> list[str]:
    from vlfuse.lm.run import BridgeRun

    runner = BridgeRun(cfg, model, encoder, Path("."))
    out: list[str] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = rows.select(range(start, min(start + batch_size, len(rows))))
        out += runner.generate(visual[chunk.image_index], chunk.prompts, cfg.generation)
    model.train(was_training)
    return out


def evaluate_stage(model, encoder, cfg, split: BridgeSplit, visual, rows: dict[str, Any]) -> dict[str, float]:
    """Validation metrics of a stage; a mixed stage reports each task's metrics prefixed with its name and monitors
    the mean of their accuracies (answer exact match, caption attribute naming)."""
    if len(rows) == 1:
        ((task, task_rows),) = rows.items()
        return evaluate_rows(model, encoder, cfg, split, visual, task_rows, task)
    metrics: dict[str, float] = {}
    for task, task_rows in rows.items():
        got = evaluate_rows(model, encoder, cfg, split, visual, task_rows, task)
        metrics.update({f"{task}_{k}": v for k, v in got.items()})
    metrics["accuracy"] = sum(metrics[f"{task}_accuracy"] for task in rows) / len(rows)
    return metrics


def evaluate_rows(model, encoder, cfg, split: BridgeSplit, visual, rows, task: str) -> dict[str, float]:
    """Greedy generation on `rows`: answer accuracy (vqa), or caption metrics + attribute naming (caption: one
    caption per image, scored against all of the image's reference captions among `rows`)."""
    generate_for = rows if task == "vqa" else rows.one_per_image()
    predictions = _generate_rows(model, encoder, cfg, split, visual, generate_for, cfg.eval.batch_size)
    if task == "vqa":
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


def evaluate_test(model, encoder, cfg, test: BridgeSplit, visual, tasks=TEST_TASKS) -> dict[str, Any]:
    """Test metrics of `tasks` ("vqa": the questions, up to cfg.eval.test_questions; "caption": one caption per
    image, up to cfg.eval.test_captions images, against all of the image's reference phrasings)."""
    metrics: dict[str, Any] = {}
    for task in tasks:
        rows = test.rows(task)
        if len(rows) == 0:
            continue
        limit = cfg.eval.test_questions if task == "vqa" else cfg.eval.test_captions
        generate_for = rows if task == "vqa" else rows.one_per_image()
        generate_for = generate_for.select(range(min(limit or len(generate_for), len(generate_for))))
        start = time.perf_counter()
        predictions = _generate_rows(model, encoder, cfg, test, visual, generate_for, cfg.eval.batch_size)
        seconds = time.perf_counter() - start
        metrics[task] = (answer_accuracy(predictions, generate_for.targets) if task == "vqa"
                         else caption_metrics(predictions, generate_for, test, references=rows))  # fmt: skip
        metrics[task]["generation_seconds"] = round(seconds, 1)
    return metrics


def report_samples(model, encoder, cfg, test: BridgeSplit, visual, n: int = 8) -> dict[str, list]:
    """The first `n` test rows of each task with their generated text, for the report: (image, prompt, ref, text)."""
    samples: dict[str, list] = {}
    for task in TEST_TASKS:
        rows = test.rows(task) if task == "vqa" else test.rows(task).one_per_image()
        rows = rows.select(range(min(n, len(rows))))
        if len(rows):
            predictions = _generate_rows(model, encoder, cfg, test, visual, rows, cfg.eval.batch_size)
            rows_with_text = zip(rows.image_index.tolist(), rows.prompts, rows.targets, predictions, strict=True)
            samples[task] = [(int(i), p, t, g) for i, p, t, g in rows_with_text]
    return samples


def write_bridge_report(run_dir: Path, cfg, summary: dict, samples: dict[str, list], test: BridgeSplit) -> None:
    """report.md with the metrics and generated samples, and plots/samples.png (images with their generated text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = cfg.data.name or cfg.data.path
    lines = [f"# Bridge run: {cfg.bridge.language_model} + {cfg.image_encoder.name} on {data}",
             "", f"Training: {summary['train_seconds']} s ({summary['trainable_parameters']:,} trainable parameters, "
             f"{summary['weights_bytes'] / 1e6:.1f} MB of weights).", ""]  # fmt: skip
    for stage in summary["stages"]:
        lines.append(f"- stage {stage['task']}: {stage['epochs']} epoch(s), best val accuracy "
                     f"{stage['best_val_accuracy']:.4f}, {stage['seconds']} s")  # fmt: skip
    lines += ["", "## Test", "", "```json", json.dumps(summary["test"], indent=1), "```", "", "## Samples", ""]
    shown = [s for task in ("vqa", "caption") for s in samples.get(task, [])[:4]]
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


def check_stage_tasks(cfg: BridgeExperimentConfig, split: BridgeSplit) -> None:
    """A stage on rows the data does not have (questions of a caption-only set) is a config error."""
    for i, stage in enumerate(cfg.stages):
        for task in STAGE_TASKS[stage.task]:
            if len(split.rows(task)) == 0:
                raise ConfigError(f"stages[{i}].task={stage.task}: {split.name} has no {task} rows")
