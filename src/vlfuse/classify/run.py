"""A finished classification run, loaded for prediction and evaluation: `vlfuse.load_run(RUN)` for a classify run.

Needs nothing but the run directory: config.yaml, labels.json, tokenizer.json (when the data has text) and
model.safetensors. Never imports the training code (`vlfuse.classify.task`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlfuse.classify import WEIGHTS
from vlfuse.classify.config import ClassifyConfig
from vlfuse.classify.evaluate import predict_logits, shard_logits
from vlfuse.classify.inputs import check_inputs
from vlfuse.data.images import load_image
from vlfuse.data.prepare import prepare_data
from vlfuse.data.splits import SplitData
from vlfuse.data.text import TextTokenizer
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import CheckpointError, DataError
from vlfuse.model import MultimodalModel, build_model
from vlfuse.objective import Objective
from vlfuse.parallel import Share
from vlfuse.train.checkpoint import load_model_weights
from vlfuse.types import Batch

log = logging.getLogger(__name__)



@dataclass
class Prediction:
    label: str
    probability: float


def build_classifier(cfg: ClassifyConfig, tokenizer: TextTokenizer | None, num_outputs: int) -> MultimodalModel:
    """The run's model, with sizes derived from its data settings and trained tokenizer (None: no text)."""
    return build_model(
        cfg.model, in_channels=cfg.data.channels, image_size=cfg.data.image_size,
        vocab_size=tokenizer.vocab_size if tokenizer else 0, pad_id=tokenizer.pad_id if tokenizer else 0,
        max_length=cfg.data.max_text_length, num_outputs=num_outputs,
    )  # fmt: skip


class ClassifyRun:
    """A trained run directory, ready to predict; needs nothing but the directory."""

    task = "classify"
    preprocessor_class: type[ImagePreprocessor] = ImagePreprocessor  # stored pixels → model input
    image_word = "image"  # what the image side is called in messages ("clip" for a video run)

    def __init__(
        self, path: Path, cfg: ClassifyConfig, objective: Objective, label_names: list[str], model, tokenizer
    ) -> None:
        self.path = path
        self.cfg = cfg
        self.objective = objective
        self.label_names = label_names
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = self.preprocessor_class(cfg.data, augment=False)
        self._warned_untrained: set[str] = set()  # modalities already warned about (once per run, not per request)

    @classmethod
    def load(cls, path: str | Path, cfg: ClassifyConfig, *, device: str = "cpu") -> ClassifyRun:
        """A finished classify run directory with its validated config (use `vlfuse.load_run(path)`, which reads and
        checks both)."""
        path = Path(path)
        labels = json.loads((path / "labels.json").read_text())
        tokenizer = TextTokenizer.load(path / "tokenizer.json") if (path / "tokenizer.json").is_file() else None
        kind = labels.get("objective", labels.get("task"))  # runs written before the task registry say "task"
        objective = Objective(kind, len(labels["label_names"]))
        model = cls.build_network(cfg, tokenizer, objective.num_outputs)
        load_model_weights(model, path / WEIGHTS)
        model.to(device).eval()
        return cls(path, cfg, objective, labels["label_names"], model, tokenizer)

    @staticmethod
    def build_network(cfg: ClassifyConfig, tokenizer: TextTokenizer | None, num_outputs: int) -> MultimodalModel:
        """The run's model before its weights are loaded."""
        return build_classifier(cfg, tokenizer, num_outputs)

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
        reads_image, reads_text = self.model.image_encoder is not None, self.model.text_encoder is not None
        missing = check_inputs(has_image, has_text, texts, reads_image=reads_image, reads_text=reads_text,
                               placeholders=placeholders is not None)  # fmt: skip
        image = text_ids = text_mask = image_present = text_present = None
        if reads_image and any(has_image):
            image = self.preprocess(torch.stack([self.load_pixels(im) for im in images]))  # (B, C, H, W)
            image_present = None if all(has_image) else torch.tensor(has_image)  # (B,)
        if reads_text and any(has_text):
            text_ids, text_mask = self.tokenizer.encode([[t or ""] for t in texts])  # (B, L), (B, L)
            text_present = None if all(has_text) else torch.tensor(has_text)  # (B,)
        unwarned = [m for m in missing if m not in self._warned_untrained]
        if unwarned and placeholders is not None and not placeholders.learned:
            self._warned_untrained.update(unwarned)
            log.warning(
                "no %s given: a placeholder stands in, but this run was trained without modality dropout "
                "(model.modality_dropout=0), so the placeholder is untrained and the prediction may be poor "
                "(said once per run)",
                " / ".join(self.image_word if m == "image" else m for m in unwarned),
            )
        return Batch(image=image, text_ids=text_ids, text_mask=text_mask, image_present=image_present,
                     text_present=text_present)  # fmt: skip

    def load_pixels(self, image: str | Path | torch.Tensor | None) -> torch.Tensor:
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
        return self.objective.probabilities(self.model(batch)).cpu()

    def predict(self, image: str | Path | None = None, text: str | None = None, *, top_k: int = 3) -> list[Prediction]:
        """Top-k labels with probabilities for one image + text; a model that reads both does with either alone.
        `top_k` is an integer ≥ 1 (more than the run's labels returns them all)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer of at least 1, got {top_k!r}")
        probs = self.predict_proba([image] if image is not None else None, [text] if text is not None else None)[0]
        order = probs.argsort(descending=True)[: min(top_k, len(probs))]
        return [Prediction(self.label_names[i], float(probs[i])) for i in order.tolist()]

    def split_data(self, split: str = "test") -> SplitData:
        """Re-prepare the run's data (with its tokenizer and labels) and return one split."""
        return self.splits(split)[0]

    def splits(self, *names: str) -> list[SplitData]:
        """Re-prepare the run's data once (with its tokenizer and labels) and return the named splits."""
        if self.cfg.data.shards is not None:
            raise DataError(f"this run streams packed shards (data.shards={self.cfg.data.shards}); this needs its "
                            "data in memory: use `vlfuse evaluate` (it streams), or --set data.shards=null with a "
                            "data.name / data.path that holds the same rows")  # fmt: skip
        data = prepare_data(self.cfg.data, seed=self.cfg.seed, tokenizer=self.tokenizer, label_names=self.label_names)
        if data.label_names != self.label_names:
            raise CheckpointError(f"the data's labels {data.label_names} differ from the run's {self.label_names}")
        available = {"train": data.train, "val": data.val, "test": data.test}
        chosen = [available.get(name) for name in names]
        missing = [name for name, split in zip(names, chosen, strict=True) if split is None]
        if missing:
            raise ValueError(f"split '{missing[0]}' is not available; choose train, val or test")
        return chosen

    def evaluate(self, split: str = "test", *, share: Share | None = None) -> dict[str, float] | None:
        """Re-prepare the run's data (or stream its packed shards) and score one split with the saved weights.

        With `share` (a batch job over several processes, `vlfuse evaluate --nproc`), each process scores its part of
        the rows (or shards); the main process gathers the logits in order and returns the metrics, the others None.
        """
        share = share or Share()
        device = next(self.model.parameters()).device
        batch_size = self.cfg.train.eval_batch_size
        if self.cfg.data.shards is not None:
            from vlfuse.data.shard_io import ShardIndex
            from vlfuse.data.shards import SampleDecoder

            index = ShardIndex.open(self.cfg.data.shards, self.cfg.data.stream.url)
            shards = index.shards(split)
            decode = SampleDecoder(self.cfg.data, self.tokenizer, self.label_names, self.objective.kind, augment=False,
                                   stored_ids_length=index.stored_ids_length(self.tokenizer),
                                   preprocess=self.preprocess)  # fmt: skip
            logits, labels, _ = shard_logits(self.model, index, split, decode, batch_size=batch_size,
                                          on_error=self.cfg.data.on_error, device=device,
                                          shards=[shards[i] for i in share.span(len(shards))])  # fmt: skip
        else:
            chosen = self.split_data(split)
            part = chosen.subset(list(share.span(len(chosen)))) if share.world > 1 else chosen
            logits = predict_logits(self.model, part, self.preprocess, batch_size=batch_size, device=device)
            labels = part.labels
        parts = share.gather((logits, labels))
        if parts is None:
            return None
        parts = [p for p in parts if len(p[1])]  # a process whose share held no shard scored nothing
        logits, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])  # (N, K), (N, ...)
        metrics = self.objective.metrics(logits, labels)
        metrics["samples"] = len(labels)
        return metrics
