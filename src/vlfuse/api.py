"""The Python API: train a config, load a run directory, predict and evaluate.

import vlfuse
run = vlfuse.train("configs/easy_vqa.yaml", run_dir="runs/vqa")
run.predict(image="shape.png", text="what color is the shape?")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from vlfuse.config import ExperimentConfig, load_config, validate_config
from vlfuse.data.images import load_image
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import CheckpointError, ConfigError
from vlfuse.model import build_model
from vlfuse.tasks import Task
from vlfuse.train.checkpoint import load_model_weights
from vlfuse.train.trainer import BEST_WEIGHTS, Callback
from vlfuse.types import Batch


@dataclass
class Prediction:
    label: str
    probability: float


def default_run_dir(config_path: str | Path | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    config: str | Path | ExperimentConfig | dict,
    *,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    callbacks: list[Callback] | None = None,
) -> Run:
    """Train a config (YAML path, dict or ExperimentConfig) and return the loaded run."""
    from vlfuse.config import apply_overrides
    from vlfuse.train.experiment import train_experiment

    if isinstance(config, (str, Path)):
        cfg = load_config(config, overrides)
    elif isinstance(config, dict):
        cfg = validate_config(apply_overrides(config, overrides or {}))
    else:
        cfg = validate_config(apply_overrides(config.model_dump(mode="json"), overrides or {}))
    run_dir = Path(run_dir) if run_dir else default_run_dir(config if isinstance(config, (str, Path)) else None)
    train_experiment(cfg, run_dir, callbacks=callbacks)
    return Run.load(run_dir)


class Run:
    """A trained run directory, ready to predict; needs nothing but the directory."""

    def __init__(self, path: Path, cfg: ExperimentConfig, task: Task, label_names: list[str], model, tokenizer):
        self.path = path
        self.cfg = cfg
        self.task = task
        self.label_names = label_names
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = ImagePreprocessor(cfg.data, augment=False)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Run:
        path = Path(path)
        for required in ("config.yaml", "labels.json", BEST_WEIGHTS):
            if not (path / required).is_file():
                raise CheckpointError(f"run directory '{path}' has no {required}; is it a finished vlfuse run?")
        try:
            cfg = validate_config(yaml.safe_load((path / "config.yaml").read_text()), str(path / "config.yaml"))
        except ConfigError as err:
            raise CheckpointError(f"run directory '{path}': {err}") from None
        labels = json.loads((path / "labels.json").read_text())
        tokenizer = TextTokenizer.load(path / "tokenizer.json") if (path / "tokenizer.json").is_file() else None
        task = Task(labels["task"], len(labels["label_names"]))
        model = build_model(
            cfg.model,
            in_channels=cfg.data.channels,
            image_size=cfg.data.image_size,
            vocab_size=tokenizer.vocab_size if tokenizer else 0,
            pad_id=tokenizer.pad_id if tokenizer else 0,
            max_length=cfg.data.max_text_length,
            num_outputs=task.num_outputs,
        )
        load_model_weights(model, path / BEST_WEIGHTS)
        model.to(device).eval()
        return cls(path, cfg, task, labels["label_names"], model, tokenizer)

    @property
    def metrics(self) -> dict[str, Any]:
        file = self.path / "test_metrics.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def make_batch(self, images: list[str | Path | torch.Tensor] | None, texts: list[str] | None) -> Batch:
        """Raw inputs → a model batch, preprocessed exactly as in training (without augmentation)."""
        image = text_ids = text_mask = None
        if self.cfg.model.image_encoder is not None:
            if not images:
                raise ValueError("this model needs an image (--image PATH)")
            size, channels = self.cfg.data.image_size, self.cfg.data.channels
            pixels = [
                im if isinstance(im, torch.Tensor) else load_image(im, size=size, channels=channels) for im in images
            ]
            image = self.preprocess(torch.stack(pixels))  # (B, C, H, W)
        if self.tokenizer is not None:
            if not texts or any(not str(t).strip() for t in texts):
                raise ValueError("this model needs a non-empty text (--text '...')")
            text_ids, text_mask = self.tokenizer.encode([[t] for t in texts])  # (B, L), (B, L)
        return Batch(image=image, text_ids=text_ids, text_mask=text_mask)

    @torch.inference_mode()
    def predict_proba(self, images=None, texts=None) -> torch.Tensor:
        """(B, num_labels) probabilities for parallel lists of images and texts."""
        batch = self.make_batch(images, texts).to(next(self.model.parameters()).device)
        return self.task.probabilities(self.model(batch)).cpu()

    def predict(self, image: str | Path | None = None, text: str | None = None, *, top_k: int = 3) -> list[Prediction]:
        """Top-k labels with probabilities for one image + text."""
        probs = self.predict_proba([image] if image is not None else None, [text] if text is not None else None)[0]
        order = probs.argsort(descending=True)[: min(top_k, len(probs))]
        return [Prediction(self.label_names[i], float(probs[i])) for i in order.tolist()]

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Re-prepare the run's data and score one split with the saved weights."""
        from vlfuse.data.dataset import prepare_data
        from vlfuse.evaluate.predict import evaluate_split

        data = prepare_data(self.cfg.data, seed=self.cfg.seed, tokenizer=self.tokenizer, label_names=self.label_names)
        chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split)
        if chosen is None:
            raise ValueError(f"split '{split}' is not available; choose train, val or test")
        if data.label_names != self.label_names:
            raise CheckpointError(f"the data's labels {data.label_names} differ from the run's {self.label_names}")
        metrics, _ = evaluate_split(
            self.model, chosen, self.task, self.preprocess, batch_size=self.cfg.train.eval_batch_size,
            device=next(self.model.parameters()).device,
        )  # fmt: skip
        return metrics


def load_run(path: str | Path, *, device: str = "cpu") -> Run:
    return Run.load(path, device=device)
