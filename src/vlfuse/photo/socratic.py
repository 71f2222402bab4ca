"""Captions and answers from what the classifier sees (Socratic Models, Zeng et al. 2022): no training.

The top ImageNet labels with their probabilities are written into the language model's prompt as words
("An image classifier sees: crow (81 %), magpie (7 %)."), followed by an instruction; the instruct LM writes the
caption or the answer. The LM is loaded on first use (seconds), so labels and search never pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlfuse.bridge.generate import GenerationConfig, OnText
from vlfuse.photo.config import SocraticConfig

Seen = list[tuple[str, float]]  # (label, probability), most likely first


def describe_seen(seen: Seen, cfg: SocraticConfig) -> str:
    """ "crow (81 %), magpie (7 %)": the labels above `min_probability` (the first always), at most `cfg.labels`."""
    kept = [(label, p) for i, (label, p) in enumerate(seen[: cfg.labels]) if i == 0 or p >= cfg.min_probability]
    return ", ".join(f"{label} ({100 * p:.0f} %)" for label, p in kept)


def socratic_prompt(seen: Seen, instruction: str, cfg: SocraticConfig) -> str:
    """The user message: what the classifier sees, then the instruction."""
    return f"{cfg.seen.replace('{labels}', describe_seen(seen, cfg))} {instruction}"


class SocraticWriter:
    """The language model that turns a prompt of labels into a caption or an answer."""

    def __init__(self, cfg: SocraticConfig) -> None:
        self.cfg = cfg
        self._lm = None
        self._tokenizer = None

    def _load(self) -> None:
        if self._lm is None:
            from vlfuse.bridge.language_model import load_language_model

            self._lm, self._tokenizer = load_language_model(self.cfg.language_model)
            self._tokenizer.padding_side = "left"
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token

    def _text(self, message: str) -> str:
        if not self.cfg.use_chat_template or not getattr(self._tokenizer, "chat_template", None):
            return message
        return self._tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                   add_generation_prompt=True)  # fmt: skip

    @torch.inference_mode()
    def write(self, messages: Sequence[str], gen: GenerationConfig, on_text: OnText | None = None) -> list[str]:
        """One generated text per user message (greedy, sampled or beam search, as `gen` says)."""
        self._load()
        tok = self._tokenizer
        batch = tok([self._text(m) for m in messages], return_tensors="pt", padding=True, add_special_tokens=False)
        options = {"max_new_tokens": gen.max_new_tokens, "pad_token_id": tok.pad_token_id,
                   "eos_token_id": tok.eos_token_id}  # fmt: skip
        if gen.strategy == "sample":
            if gen.seed is not None:
                torch.manual_seed(gen.seed)
            options |= {"do_sample": True, "temperature": gen.temperature, "top_k": gen.top_k or None,
                        "top_p": gen.top_p}  # fmt: skip
        elif gen.strategy == "beam":
            options |= {"do_sample": False, "num_beams": gen.num_beams, "length_penalty": gen.length_penalty}
        else:
            options |= {"do_sample": False}
        out = self._lm.generate(**batch, **options)  # (B, L + new)
        new = out[:, batch["input_ids"].shape[1] :]  # (B, new)
        texts = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        if on_text is not None:
            for row, text in enumerate(texts):
                on_text(row, text)
        return texts
