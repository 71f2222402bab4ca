"""Building a photo run (`vlfuse train configs/photo.yaml`): nothing is trained — the run is written and scored.

Run directory: config.yaml, tokenizer.json (MiniLM's), labels.json (the 1,000 ImageNet names: the default zero-shot
labels), model.safetensors (the dual encoder's own weights: none but the temperature — the frozen networks stay
in their packages), test_metrics.json (retrieval on the data's test split, zero-shot categories where the data
has them) and report.md.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import torch
from torch import nn

from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.data.vocab import imagenet_names
from vlfuse.photo.config import PhotoConfig
from vlfuse.report import write_report
from vlfuse.retrieval.data import load_captioned
from vlfuse.retrieval.embed import embed_images, evaluate_captioned
from vlfuse.retrieval.model import build_for_run
from vlfuse.retrieval.run import WEIGHTS
from vlfuse.retrieval.zeroshot import evaluate_zeroshot, label_embeddings
from vlfuse.train.checkpoint import save_model_weights
from vlfuse.train.runner import Stage, StageRecord, TrainingTask

CATEGORY_TEMPLATES = ["a photo of {}.", "{}", "a picture related to {}."]


class PhotoTask(TrainingTask):
    trains: ClassVar[bool] = False
    cfg: PhotoConfig

    def prepare(self) -> None:
        cfg = self.cfg
        self.tokenizer = TextTokenizer.of_encoder(cfg.model.text_encoder, max_length=cfg.data.max_text_length)
        if self.tokenizer is None:
            raise ValueError("model.text_encoder: a photo run needs a pretrained text tower (minilm)")
        self.test = load_captioned(cfg, "test")

    def save_metadata(self) -> None:
        run_dir = self.ctx.run_dir
        self.tokenizer.save(run_dir / "tokenizer.json")
        labels = {"task": "photo", "dataset": "imagenet", "label_names": imagenet_names(), "heldout": []}
        (run_dir / "labels.json").write_text(json.dumps(labels, indent=1))

    def build(self) -> nn.Module:
        return build_for_run(self.cfg, self.tokenizer).to(self.ctx.device).eval()

    def stages(self, model: nn.Module) -> list[Stage]:
        return []  # nothing to train

    def summary(self) -> dict[str, Any]:
        return {"test_images": len(self.test) if self.test is not None else 0}

    def finish(self, model: nn.Module, records: list[StageRecord]) -> dict[str, Any]:
        cfg, run_dir, test = self.cfg, self.ctx.run_dir, self.test
        save_model_weights(model, run_dir / WEIGHTS, {"format": "vlfuse-photo"})
        metrics: dict[str, Any] = {}
        if test is not None and len(test):
            prep = ImagePreprocessor(cfg.data, augment=False)
            slot = {k: i for i, k in enumerate(sorted(set(test.keys)))}
            key_ids = torch.tensor([slot[k] for k in test.keys])
            metrics["test"] = evaluate_captioned(model, test, key_ids, self.tokenizer, prep,
                                                 batch_size=cfg.train.eval_batch_size)  # fmt: skip
            categories = [a.get("category") for a in test.attributes]
            if all(categories):
                names = sorted(set(categories))
                image_emb = embed_images(model, test.images, prep, batch_size=cfg.train.eval_batch_size)
                label_emb = label_embeddings(model, self.tokenizer, names, CATEGORY_TEMPLATES, "table")
                metrics["zeroshot_categories"] = evaluate_zeroshot(image_emb, categories, label_emb, names)
                metrics["zeroshot_categories"]["chance"] = float(1 / len(names))
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1))
        summary = {
            "task": "photo (zero training: ImageNet classifier → ConSE, MiniLM; Socratic captions)",
            "image tower": cfg.model.image_encoder.model_dump_json(), "text tower": cfg.model.text_encoder.name,
            "language model": cfg.socratic.language_model, "scored on": f"{cfg.data.name}:test",
            "test images": len(test) if test is not None else 0,
            "categories": ", ".join(sorted({a.get("category", "") for a in test.attributes})) if test else "",
        }  # fmt: skip
        issues = [str(i) for i in (test.issues if test is not None else [])]
        write_report(run_dir, title=f"vlfuse photo run: {run_dir.name}", summary=summary, metrics=metrics,
                     history=[], issues=issues, plots=[])  # fmt: skip
        return {"metrics": metrics}
