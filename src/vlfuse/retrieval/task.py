"""Training a dual encoder (`task: retrieval`): captioned images → contrastive stage → retrieval and zero-shot metrics.

Run directory (beside what the runner writes): labels.json (keys, held-out keys), tokenizer.json, data_issues.json,
test_metrics.json (retrieval metrics per split and zero-shot accuracy), report.md, plots/learning_curves.png.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from torch import nn

from vlfuse.data.captions import caption_templates
from vlfuse.data.loader import BatchLoader
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.features import cached_features
from vlfuse.model import count_parameters
from vlfuse.report import plot_learning_curves, write_report
from vlfuse.retrieval.config import RetrievalConfig
from vlfuse.retrieval.data import RetrievalData, caption_rows, prepare_retrieval_data
from vlfuse.retrieval.embed import embed_images, evaluate_captioned
from vlfuse.retrieval.loss import contrastive_loss, positive_mask
from vlfuse.retrieval.model import DualEncoder, build_for_run
from vlfuse.retrieval.zeroshot import evaluate_zeroshot, label_embeddings
from vlfuse.train.runner import Stage, StageRecord, TrainingTask
from vlfuse.types import Batch

log = logging.getLogger(__name__)

MONITOR = "mean_r1"


def contrastive_step(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss of one batch: rows match when they share a key (batch.label) or an image."""
    out = model(batch)
    return contrastive_loss(out.image, out.text, out.logit_scale, positive_mask(batch.label, batch.image_index))


def zeroshot_metrics(
    cfg: RetrievalConfig, data: RetrievalData, model: DualEncoder, image_emb: torch.Tensor
) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy on the test images from the held-out templates: over all keys, and (with held-out keys)
    on the held-out keys' images, choosing among all keys and among the held-out keys only."""
    if cfg.data.name == "table" or data.test is None:
        return {}
    templates = caption_templates(cfg.data.name, "heldout")
    label_emb = label_embeddings(model, data.tokenizer, data.keys, templates, cfg.data.name)  # (K, E)
    out = {"zeroshot": evaluate_zeroshot(image_emb, data.test.keys, label_emb, data.keys)}
    if data.heldout:
        held = set(data.heldout)
        rows = [i for i, k in enumerate(data.test.keys) if k in held]
        keys = [data.test.keys[i] for i in rows]
        out["zeroshot_heldout_all_labels"] = evaluate_zeroshot(image_emb[rows], keys, label_emb, data.keys)
        slot = [data.keys.index(k) for k in data.heldout]
        out["zeroshot_heldout_only"] = evaluate_zeroshot(image_emb[rows], keys, label_emb[slot], data.heldout)
        seen = [i for i, k in enumerate(data.test.keys) if k not in held]
        seen_keys = [data.test.keys[i] for i in seen]
        out["zeroshot_seen"] = evaluate_zeroshot(image_emb[seen], seen_keys, label_emb, data.keys)
    return out


class RetrievalTask(TrainingTask):
    """Single-process: in-batch negatives are not gathered across processes."""

    cfg: RetrievalConfig

    def prepare(self) -> None:
        saved = self.ctx.run_dir / "tokenizer.json"
        tokenizer = TextTokenizer.load(saved) if self.ctx.resume and saved.is_file() else None
        if tokenizer is None:  # a pretrained text tower reads its own vocabulary
            tokenizer = TextTokenizer.of_encoder(self.cfg.model.text_encoder, max_length=self.cfg.data.max_text_length)
        self.data = prepare_retrieval_data(self.cfg, tokenizer=tokenizer)

    def save_metadata(self) -> None:
        run_dir, data = self.ctx.run_dir, self.data
        data.tokenizer.save(run_dir / "tokenizer.json")
        labels = {"task": "retrieval", "dataset": self.cfg.data.name, "label_names": data.keys,
                  "heldout": data.heldout}  # fmt: skip
        (run_dir / "labels.json").write_text(json.dumps(labels, indent=1))
        (run_dir / "data_issues.json").write_text(json.dumps([i.__dict__ for i in data.issues], indent=1))

    def build(self) -> nn.Module:
        return build_for_run(self.cfg, self.data.tokenizer).to(self.ctx.device)

    def stages(self, model: nn.Module) -> list[Stage]:
        cfg, data = self.cfg, self.data
        self.rows = caption_rows(data.train, data.key_ids(data.train), data.tokenizer)
        encoder, val_pooled = model.image_encoder, None
        # a frozen tower runs once per image: its features are cached
        if cfg.train.cache_features and model.frozen["image"] and hasattr(encoder, "cache_key"):
            if cfg.data.augment.model_dump(exclude_defaults=True):
                log.info("image augmentation is off: the frozen image tower reads cached features "
                         "(train.cache_features)")
            plain = ImagePreprocessor(cfg.data, augment=False)
            self.rows.image_features = cached_features(encoder, data.train.images, plain)
            val_pooled = cached_features(encoder, data.val.images, plain).pooled  # (M_val, D_img)
        loader = BatchLoader(self.rows, ImagePreprocessor(cfg.data, augment=True), batch_size=cfg.train.batch_size,
                             shuffle=True, seed=cfg.seed, drop_last=True)  # fmt: skip
        val_keys = data.key_ids(data.val)
        eval_prep = ImagePreprocessor(cfg.data, augment=False)

        def evaluate(m: nn.Module) -> dict[str, float]:
            return evaluate_captioned(m, data.val, val_keys, data.tokenizer, eval_prep, image_pooled=val_pooled,
                                      batch_size=cfg.train.eval_batch_size, device=self.ctx.device)  # fmt: skip

        return [Stage("contrastive", cfg.train, loader, contrastive_step, evaluate, MONITOR)]

    def summary(self) -> dict[str, Any]:
        return {"train_pairs": len(self.rows), "skipped_rows": len(self.data.issues),
                "first_skipped": [str(issue) for issue in self.data.issues[:5]]}  # fmt: skip

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        """Score val and test (retrieval and zero-shot) with the best weights; write test_metrics.json and report."""
        cfg, data, run_dir, device = self.cfg, self.data, self.ctx.run_dir, self.ctx.device
        history = records[-1].history
        prep = ImagePreprocessor(cfg.data, augment=False)
        metrics: dict[str, dict[str, float]] = {}
        for name, split in (("val", data.val), ("test", data.test)):
            if split is not None and len(split):
                metrics[name] = evaluate_captioned(model, split, data.key_ids(split), data.tokenizer, prep,
                                                   batch_size=cfg.train.eval_batch_size, device=device)  # fmt: skip
        if data.test is not None:
            image_emb = embed_images(model, data.test.images, prep, batch_size=cfg.train.eval_batch_size,
                                     device=device)  # fmt: skip
            metrics |= zeroshot_metrics(cfg, data, model, image_emb)
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
        plots_dir = run_dir / "plots"
        plots_dir.mkdir(exist_ok=True)
        plot_learning_curves(history, plots_dir / "learning_curves.png", MONITOR)
        throughput = [r["train_samples_per_s"] for r in history]
        summary = {
            "dataset": cfg.data.name, "task": "retrieval (contrastive dual encoder)",
            "model": f"{cfg.model.image_encoder.name} + {cfg.model.text_encoder.name} → {cfg.model.embed_dim}-d",
            "frozen towers": ", ".join(k for k, v in model.frozen.items() if v) or "none",
            "parameters (trainable)": f"{count_parameters(model):,}", "training images": len(data.train),
            "held-out keys": ", ".join(data.heldout) or "none",
            "temperature (learned)": f"{1 / model.logit_scale.item():.4f}", "epochs trained": len(history),
            "training pairs/s (mean)": f"{sum(throughput) / max(1, len(throughput)):.0f}",
        }  # fmt: skip
        write_report(run_dir, title=f"vlfuse retrieval run: {run_dir.name}", summary=summary, metrics=metrics,
                     history=history, issues=[str(i) for i in data.issues],
                     plots=[("Learning curves", "plots/learning_curves.png")])  # fmt: skip
        return {"metrics": metrics}
