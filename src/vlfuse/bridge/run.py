"""A trained bridge, ready to caption images and answer questions: `vlfuse.load_run(RUN or "easy-vqa-bridge")`.

Never imports the training code (`vlfuse.bridge.task`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vlfuse.bridge.config import TEST_OBJECTIVES, BridgeConfig
from vlfuse.bridge.evaluate import write_test_results
from vlfuse.bridge.generate import GenerationConfig, OnText, generate_texts
from vlfuse.bridge.language_model import load_language_model
from vlfuse.bridge.model import BridgeModel
from vlfuse.data.images import load_images
from vlfuse.data.text import require_text
from vlfuse.data.transforms import ImagePreprocessor
from vlfuse.errors import DataError
from vlfuse.ood import OOD_FILE, OODVerdict, load_detector
from vlfuse.registry import IMAGE_ENCODERS
from vlfuse.train.checkpoint import load_model_weights

WEIGHTS = "bridge.safetensors"  # projector + adapters (+ a from-scratch decoder): what the run trained


def build_bridge(cfg: BridgeConfig, device: torch.device | str = "cpu") -> tuple[BridgeModel, torch.nn.Module]:
    """The frozen image encoder and the bridge around the pretrained LM (projector and adapters freshly built)."""
    model_cfg = cfg.model
    encoder = IMAGE_ENCODERS.build(model_cfg.image_encoder, in_channels=cfg.data.channels,
                                   image_size=cfg.data.image_size)  # fmt: skip
    lm, tokenizer = load_language_model(model_cfg.language_model, model_cfg.scratch)
    model = BridgeModel(model_cfg, lm.to(device), tokenizer, visual_dim=encoder.token_dim)
    return model.to(device), encoder.eval().to(device)


class BridgeRun:
    """Image encoder + trained projector/adapters + the pretrained LM, for inference.

    Attributes:
        cfg: the run's `BridgeConfig`.
        model: the `BridgeModel` (LM inside).
        encoder: the frozen image encoder.
        preprocess: the evaluation-time image preprocessing.
    """

    task = "bridge"

    def __init__(self, cfg: BridgeConfig, model: BridgeModel, encoder: torch.nn.Module, path: Path) -> None:
        self.cfg, self.model, self.encoder, self.path = cfg, model, encoder, path
        self.preprocess = ImagePreprocessor(cfg.data, augment=False)
        self.ood = load_detector(path / OOD_FILE)  # None until fitted (`vlfuse ood RUN`)

    @classmethod
    def load(cls, path: str | Path, cfg: BridgeConfig, *, device: str = "cpu") -> BridgeRun:
        """A finished bridge run directory with its validated config (use `vlfuse.load_run(path_or_name)`)."""
        model, encoder = build_bridge(cfg, device)
        load_model_weights(model, Path(path) / WEIGHTS)
        return cls(cfg, model.eval(), encoder.eval(), Path(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.projector.parameters()).device

    @property
    def metrics(self) -> dict[str, Any]:
        file = self.path / "metrics.json"
        return json.loads(file.read_text()).get("test", {}) if file.is_file() else {}

    # ------------------------------------------------------------------ inputs
    def load_images(self, paths: Sequence[str | Path]) -> Tensor:
        """Decode image files at the run's size and channels: (B, C, H, W) uint8; a bad file is a DataError."""
        images, errors = load_images([str(p) for p in paths], size=self.cfg.data.image_size,
                                     channels=self.cfg.data.channels, fit=self.cfg.data.fit)  # fmt: skip
        if errors:
            raise DataError("; ".join(str(e) for e in errors.values()))
        return images

    @torch.inference_mode()
    def visual_tokens(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 → visual tokens (B, N, D)."""
        return self.encoder(self.preprocess(images.to(self.device))).tokens

    @torch.inference_mode()
    def ood_inputs(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 → (B, D) pooled visual features: what the OOD detector scores (a feature density, or,
        over a frozen EfficientNet-Lite0, the ImageNet classifier layer's confidence)."""
        return self.encoder(self.preprocess(images.to(self.device))).pooled.float().cpu()

    def ood_verdicts(self, images: Tensor) -> list[OODVerdict] | None:
        """Per image how far it is from the training images; None when the run has no detector."""
        return None if self.ood is None else self.ood.verdicts(self.ood_inputs(images))

    # ------------------------------------------------------------------ generation
    def generate(
        self, images: Tensor, prompts: Sequence[str], gen: GenerationConfig | None = None,
        on_text: OnText | None = None,
    ) -> list[str]:  # fmt: skip
        """One generated text per (image, prompt) pair; images (B, C, H, W) uint8 or visual tokens (B, N, D).

        `on_text(row, piece)` receives each row's text as it is generated (streaming).
        """
        visual = images if images.is_floating_point() and images.ndim == 3 else self.visual_tokens(images)
        return generate_texts(self.model, visual.to(self.device), list(prompts), gen or self.cfg.generation, on_text)

    def ask(
        self, images: Tensor, questions: Sequence[str], gen: GenerationConfig | None = None,
        on_text: OnText | None = None,
    ) -> list[str]:  # fmt: skip
        """Free-form answers to questions about images (one question per image).

        Raises:
            DataError: a question is empty (only whitespace or control characters; see `data.text.require_text`).
        """
        questions = [require_text(q, f"question {i + 1}" if len(questions) > 1 else "the question")
                     for i, q in enumerate(questions)]  # fmt: skip
        return self.generate(images, questions, gen, on_text)

    def caption(self, images: Tensor, gen: GenerationConfig | None = None, on_text: OnText | None = None) -> list[str]:
        """A caption per image."""
        return self.generate(images, [self.cfg.caption_prompt] * len(images), gen, on_text)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "test", *, objectives: Sequence[str] = TEST_OBJECTIVES) -> dict[str, Any]:
        """Re-score the test split for `objectives` (vqa, caption): updates those parts of metrics.json (keeping the
        rest) and rewrites report.md; returns the test metrics.

        Raises:
            ValueError: another split, or an unknown objective.
        """
        unknown = sorted(set(objectives) - set(TEST_OBJECTIVES))
        if split != "test" or unknown or not objectives:
            raise ValueError(
                f"a bridge run is scored on the test split with objectives from {', '.join(TEST_OBJECTIVES)}; "
                f"got split={split}, objectives={', '.join(objectives)}"
            )
        metrics_file = self.path / "metrics.json"
        summary = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        summary = write_test_results(self.path, self.cfg, self.model, self.encoder, summary, tuple(objectives))
        return {name: summary["test"][name] for name in objectives if name in summary["test"]}
