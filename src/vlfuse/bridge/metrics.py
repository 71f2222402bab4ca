"""Metrics for generated text: BLEU-4, CIDEr and ROUGE-L for captions (the COCO caption scorers of pycocoevalcap),
exact-match and normalised accuracy for generated answers, and how often a caption names the right attributes."""

from __future__ import annotations

import re
from collections.abc import Sequence

from vlfuse.pretrained import pip_command, require_module

ARTICLES = {"a", "an", "the"}


def normalise_answer(text: str) -> str:
    """VQA-style answer normalisation: lower case, punctuation removed, articles dropped, spaces collapsed."""
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return " ".join(w for w in words if w not in ARTICLES)


def answer_accuracy(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """exact_match: the generated text equals the reference (stripped); accuracy: equal after `normalise_answer`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    n = max(1, len(references))
    exact = sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
    normalised = sum(normalise_answer(p) == normalise_answer(r) for p, r in zip(predictions, references, strict=True))
    return {"exact_match": exact / n, "accuracy": normalised / n, "samples": len(references)}


def _tokenize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-4, CIDEr and ROUGE-L of generated captions against one or more references each.

    Text is lower-cased and stripped of punctuation before scoring (in place of the Java PTB tokenizer).
    """
    require_module("pycocoevalcap", pip_command("pycocoevalcap"), "caption metrics (BLEU-4, CIDEr, ROUGE-L)")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need one list of references per prediction, got {len(predictions)} / {len(references)}")
    res = {i: [_tokenize(p) or "empty"] for i, p in enumerate(predictions)}
    gts = {i: [_tokenize(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "cider": float(cider), "rouge_l": float(rouge), "samples": len(predictions)}


NAMED_ATTRIBUTES = ("color", "shape", "class", "object")  # what a caption of an image should name


def _singular(word: str) -> str:
    """A crude singular, enough to match "trucks" with "truck" and "boxes" with "box"."""
    for suffix, keep in (("ies", "y"), ("ses", "s"), ("xes", "x"), ("ches", "ch"), ("shes", "sh"), ("s", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


def names_attributes(caption: str, attributes: dict[str, str]) -> bool:
    """Whether a caption names every attribute value among `NAMED_ATTRIBUTES` (colour "red" and shape "circle"; a
    real photo's object noun "truck") as whole words, singular or plural alike."""
    words = {_singular(w) for w in _tokenize(caption).split()}
    named = [v for k, v in attributes.items() if k in NAMED_ATTRIBUTES]
    return all({_singular(w) for w in _tokenize(value).split()} <= words for value in named)
