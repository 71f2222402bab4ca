"""Training a classifier: data → fused model → one stage (loss, validation metric) → test metrics, plots, report.

Run directory (beside what the runner writes: config.yaml, model.safetensors, checkpoints/, metrics.jsonl,
tensorboard/, run.json): labels.json (objective and label names in id order), tokenizer.json (when the data has text),
data_issues.json, test_metrics.json, report.md, plots/learning_curves.png, plots/confusion_{val,test}.png.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import torch
from torch import nn

from vlfuse.classify.config import ClassifyConfig
from vlfuse.classify.evaluate import evaluate_shards, evaluate_split
from vlfuse.classify.run import build_classifier
from vlfuse.classify.sharded import open_sharded
from vlfuse.data.loader import BatchLoader
from vlfuse.data.prepare import prepare_data
from vlfuse.data.shards import SampleDecoder, ShardLoader
from vlfuse.data.splits import PreparedData, SplitData
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import ConfigError
from vlfuse.features import cached_features
from vlfuse.model import add_missing_modality_rows, count_parameters
from vlfuse.objective import Objective, confusion_matrix
from vlfuse.report import plot_confusion_matrix, plot_learning_curves, write_report
from vlfuse.train.runner import Stage, StageRecord, TrainingTask

log = logging.getLogger(__name__)


def pretrained_tokenizer_for(cfg: ClassifyConfig) -> TextTokenizer | None:
    """The tokenizer a pretrained text encoder (e.g. minilm) reads, or None: train one on the data."""
    return TextTokenizer.of_encoder(cfg.model.text_encoder, max_length=cfg.data.max_text_length)


def attach_cached_features(cfg: ClassifyConfig, model: nn.Module, data: PreparedData) -> None:
    """With a frozen, cacheable image tower and train.cache_features, give every split its cached image features,
    so no epoch (or evaluation) runs the tower again; see `vlfuse.features`."""
    encoder = getattr(model, "image_encoder", None)
    if not cfg.train.cache_features or encoder is None or not getattr(encoder, "frozen", False):
        return
    if not hasattr(encoder, "cache_key"):
        return
    if cfg.data.augment.model_dump(exclude_defaults=True):
        log.info("image augmentation is off: the frozen image tower reads cached features (train.cache_features)")
    preprocess = ImagePreprocessor(cfg.data, augment=False)
    for split in (data.train, data.val, data.test):
        if split is not None and split.images is not None:
            split.image_features = cached_features(encoder, split.images, preprocess)


class ClassifyTask(TrainingTask):
    distributed: ClassVar[bool] = True
    cfg: ClassifyConfig

    def prepare(self) -> None:
        self.data = prepare_data(self.cfg.data, seed=self.cfg.seed, tokenizer=pretrained_tokenizer_for(self.cfg))
        self.objective = Objective(self.data.objective, len(self.data.label_names), self.cfg.train.label_smoothing)

    def save_metadata(self) -> None:
        run_dir, data = self.ctx.run_dir, self.data
        labels = {"objective": data.objective, "label_names": data.label_names}
        (run_dir / "labels.json").write_text(json.dumps(labels, indent=1))
        if data.tokenizer is not None:
            data.tokenizer.save(run_dir / "tokenizer.json")
        (run_dir / "data_issues.json").write_text(json.dumps([i.__dict__ for i in data.issues], indent=1))

    def preprocessor(self, *, augment: bool) -> ImagePreprocessor:
        """How the data's stored pixels become model input (the video task picks frames too)."""
        return ImagePreprocessor(self.cfg.data, augment=augment)

    def build_network(self) -> nn.Module:
        """The task's model, sizes derived from the prepared data (the video task builds a clip model)."""
        return build_classifier(self.cfg, self.data.tokenizer, self.objective.num_outputs)

    def build(self) -> nn.Module:
        model = self.build_network().to(self.ctx.device)
        attach_cached_features(self.cfg, model, self.data)
        return model

    @classmethod
    def for_config(cls, cfg: ClassifyConfig) -> type[TrainingTask]:
        if cfg.data.shards is None:
            return cls
        if cls is not ClassifyTask:
            raise ConfigError(f"data.shards: task '{cfg.task}' reads its data into memory; streaming packed shards is "
                              "supported by tasks 'classify' and 'video'")  # fmt: skip
        return ShardedClassifyTask

    def train_loader(self):
        """The training batches: `len()`, `set_epoch(epoch)` and (for mid-epoch resume) `skip_batches(n)`."""
        cfg, dist = self.cfg, self.ctx.dist
        return BatchLoader(
            self.data.train, self.preprocessor(augment=True), batch_size=cfg.train.batch_size, shuffle=True,
            seed=cfg.seed, rank=dist.rank, world_size=dist.world_size, drop_last=True,
            group_by_image=cfg.train.group_by_image,
        )  # fmt: skip

    def stages(self, model: nn.Module) -> list[Stage]:
        objective = self.objective
        dropout = model.modality_dropout

        def loss(m: nn.Module, batch) -> torch.Tensor:
            if dropout > 0:
                batch = add_missing_modality_rows(batch, dropout)  # B → B + E rows
            return objective.loss(m(batch), batch.label)

        def evaluate(m: nn.Module) -> dict[str, float]:
            return self.score(m, "val")[0]

        return [Stage("classify", self.cfg.train, self.train_loader(), loss, evaluate, objective.primary_metric)]

    def scored_splits(self) -> list[str]:
        """The splits `finish` scores (those with rows)."""
        return [name for name in ("val", "test") if (s := getattr(self.data, name)) is not None and len(s)]

    def score(self, model: nn.Module, name: str) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """Metrics, logits (N, K) and labels of split `name` ("val" / "test")."""
        split = getattr(self.data, name)
        metrics, logits = evaluate_split(model, split, self.objective, self.preprocessor(augment=False),
                                         batch_size=self.cfg.train.eval_batch_size, device=self.ctx.device)  # fmt: skip
        return metrics, logits, split.labels

    def train_rows(self) -> int:
        return len(self.data.train)

    def summary(self) -> dict[str, Any]:
        issues = self.data.issues
        return {"skipped_rows": len(issues), "first_skipped": [str(issue) for issue in issues[:5]]}

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        """Score val and test with the best weights; write test_metrics.json, plots and report.md."""
        cfg, data, objective, run_dir = self.cfg, self.data, self.objective, self.ctx.run_dir
        history = records[-1].history
        plots_dir = run_dir / "plots"
        plots_dir.mkdir(exist_ok=True)
        plot_learning_curves(history, plots_dir / "learning_curves.png", objective.primary_metric)
        plots = [("Learning curves", "plots/learning_curves.png")]
        metrics: dict[str, dict[str, float]] = {}
        self.final_logits: dict[str, torch.Tensor] = {}  # split name → the best weights' logits
        for name in self.scored_splits():
            metrics[name], logits, labels = self.score(model, name)
            self.final_logits[name] = logits  # (N, K), for subclasses that build on the scored splits
            if objective.kind != "multilabel":
                matrix = confusion_matrix(objective.predictions(logits), labels.long(), objective.num_labels)
                png = f"plots/confusion_{name}.png"
                plot_confusion_matrix(matrix, data.label_names, run_dir / png, f"Confusion matrix ({name})")
                plots.append((f"Confusion matrix ({name})", png))
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
        throughput = [r["train_samples_per_s"] for r in history]
        components = (cfg.model.image_encoder, cfg.model.text_encoder, cfg.model.fusion, cfg.model.head)
        summary = {
            "dataset": cfg.data.name, "objective": objective.kind, "model": " + ".join(c.name for c in components if c),
            "parameters": f"{count_parameters(model):,}", "train rows": self.train_rows(),
            "epochs trained": len(history),
            "training samples/s (mean)": f"{sum(throughput) / max(1, len(throughput)):.0f}",
            "processes": self.ctx.dist.world_size,
        }  # fmt: skip
        write_report(run_dir, title=f"vlfuse run: {run_dir.name}", summary=summary, metrics=metrics,
                     history=history, issues=[str(i) for i in data.issues], plots=plots)  # fmt: skip
        return {"metrics": metrics, "train_samples_per_s": summary["training samples/s (mean)"]}


class ShardedClassifyTask(ClassifyTask):
    """The classify task streaming packed shards (`data.shards`): nothing is read into memory; the index gives labels,
    tokenizer and counts, training batches stream through `ShardLoader` and validation and test from their own
    shards. The run directory is an in-memory run's, so `predict`, `serve` and `export` work on it unchanged."""

    def prepare(self) -> None:
        cfg = self.cfg
        self.index, self.data = open_sharded(cfg.data.shards, pretrained_tokenizer_for(cfg), cfg.data.max_text_length,
                                             cfg.data.stream.url)
        self.objective = Objective(self.data.objective, len(self.data.label_names), cfg.train.label_smoothing)
        self.scored: dict[str, SplitData] = {}
        log.info("streaming %s: %d train rows in %d shard(s)", self.index.root, self.index.rows("train"),
                 len(self.index.shards("train")))  # fmt: skip

    def build(self) -> nn.Module:
        model = self.build_network().to(self.ctx.device)
        if getattr(getattr(model, "image_encoder", None), "frozen", False):
            log.info("streaming from shards: the frozen image tower runs on every batch (features are cached only "
                     "for in-memory data)")  # fmt: skip
        return model

    def _decoder(self, *, augment: bool) -> SampleDecoder:
        tokenizer = self.data.tokenizer
        return SampleDecoder(self.cfg.data, tokenizer, self.data.label_names, self.data.objective, augment=augment,
                             stored_ids_length=self.index.stored_ids_length(tokenizer),
                             preprocess=self.preprocessor(augment=augment))  # fmt: skip

    def train_loader(self) -> ShardLoader:
        cfg, dist = self.cfg, self.ctx.dist
        return ShardLoader(self.index, cfg.data, self._decoder(augment=True), batch_size=cfg.train.batch_size,
                           seed=cfg.seed, rank=dist.rank, world_size=dist.world_size)  # fmt: skip

    def scored_splits(self) -> list[str]:
        return [name for name in ("val", "test") if self.index.has(name)]

    def score(self, model: nn.Module, name: str) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        metrics, logits, labels, texts = evaluate_shards(
            model, self.index, name, self._decoder(augment=False), self.objective,
            batch_size=self.cfg.train.eval_batch_size, on_error=self.cfg.data.on_error, device=self.ctx.device,
        )  # fmt: skip
        # the rows' texts and labels (no pixels), for scores per kind of question (video)
        self.scored[name] = SplitData(images=None, image_index=None, token_ids=None, token_mask=None, labels=labels,
                                      texts=texts, image_sources=[], source_rows=list(range(len(texts))))  # fmt: skip
        return metrics, logits, labels

    def train_rows(self) -> int:
        return self.index.rows("train")
