"""The Python API: train a config, load a run directory, predict and evaluate.

import vlfuse
run = vlfuse.train("configs/easy_vqa.yaml", run_dir="runs/vqa")
run.predict(image="shape.png", text="what color is the shape?")
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from vlfuse.config import ExperimentConfig, load_config, validate_config
from vlfuse.data.images import load_image
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import CheckpointError, ConfigError
from vlfuse.model import build_experiment_model
from vlfuse.tasks import Task
from vlfuse.train.checkpoint import load_model_weights
from vlfuse.train.trainer import BEST_WEIGHTS, Callback
from vlfuse.types import Batch

if TYPE_CHECKING:
    from vlfuse.data.dataset import SplitData

log = logging.getLogger(__name__)


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
    overwrite: bool = False,
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
    train_experiment(cfg, run_dir, callbacks=callbacks, overwrite=overwrite)
    return load_run(run_dir)


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
        self._warned_untrained: set[str] = set()  # modalities already warned about (once per run, not per request)

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
        model = build_experiment_model(cfg, tokenizer, task.num_outputs)
        load_model_weights(model, path / BEST_WEIGHTS)
        model.to(device).eval()
        return cls(path, cfg, task, labels["label_names"], model, tokenizer)

    @property
    def metrics(self) -> dict[str, Any]:
        file = self.path / "test_metrics.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def make_batch(
        self, images: list[str | Path | torch.Tensor | None] | None, texts: list[str | None] | None
    ) -> Batch:
        """Raw inputs → a model batch, preprocessed exactly as in training (without augmentation).

        A model that reads both modalities accepts either one missing: `images=None` / `texts=None`, or None
        entries in the lists (per row). The model's placeholder stands in for what is missing.

        Raises:
            ValueError: a modality the model cannot do without is missing, a row has neither, a text is empty, or
                the lists differ in length.
        """
        n = len(images) if images is not None else len(texts) if texts is not None else 0
        if images is not None and texts is not None and len(images) != len(texts):
            raise ValueError(f"got {len(images)} images but {len(texts)} texts; expected one text per image")
        if n == 0:
            raise ValueError("no inputs: give an image (--image PATH), a text (--text '...') or both")
        placeholders = getattr(self.model, "placeholders", None)
        has_image = [im is not None for im in images] if images is not None else [False] * n
        has_text = [t is not None for t in texts] if texts is not None else [False] * n
        image = text_ids = text_mask = image_present = text_present = None
        missing = []
        if self.model.image_encoder is not None:
            if not all(has_image):
                if placeholders is None:
                    raise ValueError("this model needs an image (--image PATH)")
                missing.append("image")
            if any(has_image):
                image = self.preprocess(torch.stack([self._pixels(im) for im in images]))  # (B, C, H, W)
                image_present = None if all(has_image) else torch.tensor(has_image)  # (B,)
        if self.model.text_encoder is not None:
            if not all(has_text):
                if placeholders is None:
                    raise ValueError("this model needs a non-empty text (--text '...')")
                missing.append("text")
            if any(not str(t).strip() for t in texts or [] if t is not None):
                raise ValueError("empty text: give a non-empty text (--text '...'), or leave the text out")
            if any(has_text):
                text_ids, text_mask = self.tokenizer.encode([[t or ""] for t in texts])  # (B, L), (B, L)
                text_present = None if all(has_text) else torch.tensor(has_text)  # (B,)
        if placeholders is not None and not all(i or t for i, t in zip(has_image, has_text, strict=True)):
            raise ValueError("every input needs an image, a text or both")
        unwarned = [m for m in missing if m not in self._warned_untrained]
        if unwarned and placeholders is not None and not placeholders.learned:
            self._warned_untrained.update(unwarned)
            log.warning(
                "no %s given: a placeholder stands in, but this run was trained without modality dropout "
                "(model.modality_dropout=0), so the placeholder is untrained and the prediction may be poor "
                "(said once per run)",
                " / ".join(unwarned),
            )
        return Batch(image=image, text_ids=text_ids, text_mask=text_mask, image_present=image_present,
                     text_present=text_present)  # fmt: skip

    def _pixels(self, image: str | Path | torch.Tensor | None) -> torch.Tensor:
        """One input image as (C, H, W) uint8 at the run's size; zeros for a missing one (the model ignores them)."""
        size, channels = self.cfg.data.image_size, self.cfg.data.channels
        if image is None:
            return torch.zeros(channels, size, size, dtype=torch.uint8)  # (C, H, W)
        return image if isinstance(image, torch.Tensor) else load_image(image, size=size, channels=channels)

    @torch.inference_mode()
    def predict_proba(self, images=None, texts=None) -> torch.Tensor:
        """(B, num_labels) probabilities for parallel lists of images and texts (either may be missing, see
        `make_batch`)."""
        batch = self.make_batch(images, texts).to(next(self.model.parameters()).device)
        return self.task.probabilities(self.model(batch)).cpu()

    def predict(self, image: str | Path | None = None, text: str | None = None, *, top_k: int = 3) -> list[Prediction]:
        """Top-k labels with probabilities for one image + text; a model that reads both does with either alone."""
        probs = self.predict_proba([image] if image is not None else None, [text] if text is not None else None)[0]
        order = probs.argsort(descending=True)[: min(top_k, len(probs))]
        return [Prediction(self.label_names[i], float(probs[i])) for i in order.tolist()]

    def split_data(self, split: str = "test") -> SplitData:
        """Re-prepare the run's data (with its tokenizer and labels) and return one split."""
        from vlfuse.data.dataset import prepare_data

        data = prepare_data(self.cfg.data, seed=self.cfg.seed, tokenizer=self.tokenizer, label_names=self.label_names)
        chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split)
        if chosen is None:
            raise ValueError(f"split '{split}' is not available; choose train, val or test")
        if data.label_names != self.label_names:
            raise CheckpointError(f"the data's labels {data.label_names} differ from the run's {self.label_names}")
        return chosen

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Re-prepare the run's data and score one split with the saved weights."""
        from vlfuse.evaluate.predict import evaluate_split

        chosen = self.split_data(split)
        metrics, _ = evaluate_split(
            self.model, chosen, self.task, self.preprocess, batch_size=self.cfg.train.eval_batch_size,
            device=next(self.model.parameters()).device,
        )  # fmt: skip
        return metrics


def load_run(path: str | Path, *, device: str = "cpu") -> Run:
    """A run directory as a `Run`, or as a `vlfuse.retrieval.RetrievalRun` for a `task: retrieval` run."""
    config = Path(path) / "config.yaml"
    if config.is_file() and (yaml.safe_load(config.read_text()) or {}).get("task") == "retrieval":
        from vlfuse.retrieval.run import RetrievalRun

        return RetrievalRun.load(path)
    return Run.load(path, device=device)
