"""A zero-training real-photo run (`task: photo`, shipped as "photo"): labels, search, captions and answers.

It is a retrieval run (its dual encoder is ConSE + MiniLM, so `vlfuse zeroshot / index / search` work unchanged)
with the ImageNet classifier's own labels and a language model that writes from them (`vlfuse.photo.socratic`).
Never imports the training side (`vlfuse.photo.task`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vlfuse.bridge.generate import GenerationConfig, OnText
from vlfuse.data.text import require_text
from vlfuse.data.vocab import imagenet_names
from vlfuse.errors import ConfigError
from vlfuse.ood import OOD_FILE, OODVerdict, load_detector
from vlfuse.photo.config import PhotoConfig
from vlfuse.photo.socratic import Seen, SocraticWriter, socratic_prompt
from vlfuse.retrieval.run import RetrievalRun


class PhotoRun(RetrievalRun):
    """ConSE dual encoder + Socratic writer; see the module docstring."""

    task = "photo"
    cfg: PhotoConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.model.image_encoder, "logits"):
            raise ConfigError(f"run '{self.path}': a photo run's image tower must be an ImageNet classifier "
                              f"(imagenet_conse), got {self.cfg.model.image_encoder.name}")  # fmt: skip
        self.writer = SocraticWriter(self.cfg.socratic)
        self.class_names = imagenet_names()
        self.ood = load_detector(self.path / OOD_FILE)  # None until fitted (`vlfuse ood RUN`)

    @torch.inference_mode()
    def ood_inputs(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 → (B, 1000) ImageNet logits: what the OOD detector (the classifier's confidence)
        scores."""
        return self.model.image_encoder.logits(self.preprocess(images))

    def ood_verdicts(self, images: Tensor) -> list[OODVerdict] | None:
        """Per image how far it is from the reference photos; None when the run has no detector."""
        return None if self.ood is None else self.ood.verdicts(self.ood_inputs(images))

    @torch.inference_mode()
    def class_probabilities(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 → (B, 1000) ImageNet probabilities."""
        logits = self.model.image_encoder.logits(self.preprocess(images))  # (B, 1000)
        return logits.softmax(dim=-1)

    def seen(self, images: Tensor, k: int = 5) -> list[Seen]:
        """Per image its `k` most likely ImageNet labels with probabilities."""
        top, index = self.class_probabilities(images).topk(k, dim=-1)  # (B, k)
        return [[(self.class_names[int(i)], float(p)) for p, i in zip(ps, ids, strict=True)]
                for ps, ids in zip(top, index, strict=True)]  # fmt: skip

    def caption(self, images: Tensor, gen: GenerationConfig | None = None, on_text: OnText | None = None) -> list[str]:
        """A caption per image, written by the language model from the classifier's top labels."""
        socratic = self.cfg.socratic
        messages = [socratic_prompt(s, socratic.caption_instruction, socratic) for s in self.seen(images)]
        return self.writer.write(messages, gen or self.cfg.generation, on_text)

    def ask(
        self, images: Tensor, questions: Sequence[str], gen: GenerationConfig | None = None,
        on_text: OnText | None = None,
    ) -> list[str]:  # fmt: skip
        """Answers to one question per image, from the classifier's top labels.

        Raises:
            DataError: a question is empty.
        """
        questions = [require_text(q, f"question {i + 1}" if len(questions) > 1 else "the question")
                     for i, q in enumerate(questions)]  # fmt: skip
        socratic = self.cfg.socratic
        messages = [socratic_prompt(s, socratic.answer_instruction.replace("{question}", q), socratic)
                    for s, q in zip(self.seen(images), questions, strict=True)]  # fmt: skip
        return self.writer.write(messages, gen or self.cfg.generation, on_text)
