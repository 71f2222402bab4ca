"""Which image cells a bridge's answer looked at, per generated word, and how much the image mattered to it.

For an (image, question) the run generates its answer, then scores that answer once more with the LM's attention
weights: for each answer token, the attention of the position that predicts it over the projected visual tokens,
averaged over layers and heads, is a map over the image grid. Measured alongside: each token's log-probability with
the image and with the image removed (every pixel its mean colour) — the image's contribution per token — and a
deletion check of the answer's mean map (removing its top 10 % of pixels against a random 10 %).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vlfuse.explain import render
from vlfuse.explain.checks import deletion_keep_masks
from vlfuse.explain.target import removed_pixels


@dataclass
class AnswerExplanation:
    result: dict[str, Any]  # what answer_explanation.json holds
    raw_image: Tensor  # (C, H, W) uint8
    maps: list[Tensor]  # per answer token (H, W)
    mean_map: Tensor  # (H, W)


def _eager_attention(lm) -> str | None:
    """Switch the LM to eager attention (the one that returns weights); returns the previous implementation."""
    previous = getattr(lm.config, "_attn_implementation", None)
    if previous != "eager" and hasattr(lm, "set_attn_implementation"):
        lm.set_attn_implementation("eager")
    return previous


@torch.inference_mode()
def score_answer(model, visual: Tensor, prompt: str, answer: str, *, attentions: bool) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probabilities (A,) of `answer` (its end-of-turn token included) after `prompt` and visual tokens
    (1, N, D); with `attentions`, also (A, N): each answer token's attention over the N projected visual tokens."""
    prompt_ids, target_ids = model.encode_prompt(prompt), model.encode_target(answer)
    ids = torch.tensor([prompt_ids + target_ids], device=visual.device)  # (1, L)
    embeds = model.embed(visual, ids)  # (1, T, H) = [user prefix P, visual N, prompt, answer]
    total, n_visual = embeds.shape[1], model.projector(visual).shape[1]
    first_visual = total - ids.shape[1] - n_visual  # P
    answer_start = total - len(target_ids)
    out = model.lm.model(inputs_embeds=embeds, output_attentions=attentions)
    predicting = out.last_hidden_state[0, answer_start - 1 : total - 1]  # (A, H): position t predicts token t + 1
    logp = F.log_softmax(model.lm.lm_head(predicting).float(), -1)  # (A, V)
    token_logp = logp[torch.arange(len(target_ids)), torch.tensor(target_ids, device=logp.device)]  # (A,)
    if not attentions:
        return token_logp, None
    stacked = torch.stack([a[0] for a in out.attentions]).float()  # (layers, heads, T, T)
    rows = stacked[:, :, answer_start - 1 : total - 1, first_visual : first_visual + n_visual]  # (layers, heads, A, N)
    return token_logp, rows.mean((0, 1))  # (A,), (A, N)


def _cell_map(weights: Tensor, size: tuple[int, int]) -> Tensor:
    """(N,) weights over a square grid of visual tokens → (H, W), bilinear."""
    side = round(weights.numel() ** 0.5)
    return F.interpolate(weights.view(1, 1, side, side), size=size, mode="bilinear", align_corners=False)[0, 0]


@torch.inference_mode()
def explain_answer(run, image: str | Path, question: str, *, fraction: float = 0.1, seed: int = 0) -> AnswerExplanation:
    """Generate the run's answer to `question` about `image` and explain it (see the module docstring)."""
    raw = run.load_images([image])  # (1, C, H, W) uint8
    pixels = run.preprocess(raw.to(run.device))  # (1, C, H, W)
    visual = run.encoder(pixels).tokens  # (1, N_v, D): the answer is generated from these and explained on them
    answer = run.ask(visual, [question])[0]
    model = run.model
    previous = _eager_attention(model.lm)
    try:
        token_logp, attn = score_answer(model, visual, question, answer, attentions=True)
    finally:
        if previous and previous != "eager" and hasattr(model.lm, "set_attn_implementation"):
            model.lm.set_attn_implementation(previous)
    size = tuple(raw.shape[2:])
    maps = [_cell_map(row, size) for row in attn]  # A × (H, W)
    mean_map = _cell_map(attn.mean(0), size)  # (H, W)
    blank = run.encoder(removed_pixels(pixels)).tokens
    blank_logp, _ = score_answer(model, blank, question, answer, attentions=False)  # (A,) without the image
    drops = {}
    for name, keep in zip(("top", "random"), deletion_keep_masks(mean_map, fraction=fraction, seed=seed), strict=True):
        cut = torch.where(keep[None], pixels, removed_pixels(pixels))  # (1, C, H, W)
        cut_logp, _ = score_answer(model, run.encoder(cut).tokens, question, answer, attentions=False)
        drops[name] = float(token_logp.sum() - cut_logp.sum())
    tokens = [model.tokenizer.decode([t]) for t in model.encode_target(answer)]
    result = {
        "run": str(run.path), "image": str(image), "question": question, "answer": answer, "tokens": tokens,
        "token_logprob": token_logp.tolist(), "token_logprob_without_image": blank_logp.tolist(),
        "image_contribution": float(token_logp.sum() - blank_logp.sum()),
        "attention_over_cells": [[round(v, 6) for v in row] for row in attn.tolist()],
        "deletion": {"top_logprob_drop": drops["top"], "random_logprob_drop": drops["random"],
                     "passed": drops["top"] > drops["random"], "fraction": fraction},
    }  # fmt: skip
    return AnswerExplanation(result, raw[0].cpu(), [m.cpu() for m in maps], mean_map.cpu())


def write_answer_explanation(explanation: AnswerExplanation, out_dir: str | Path) -> Path:
    """explanation.json, input.png, answer.png (the mean map), token-<i>.png per answer token, and index.html."""
    import html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = explanation.result
    render.image_png(explanation.raw_image, out / "input.png")
    render.overlay_png(explanation.raw_image, explanation.mean_map, out / "answer.png")
    figures = ["<figure><img src='input.png'><figcaption>input</figcaption></figure>",
               "<figure><img src='answer.png'><figcaption>the whole answer</figcaption></figure>"]  # fmt: skip
    for i, (token, heat) in enumerate(zip(r["tokens"], explanation.maps, strict=True)):
        render.overlay_png(explanation.raw_image, heat, out / f"token-{i}.png")
        gain = r["token_logprob"][i] - r["token_logprob_without_image"][i]
        figures.append(f"<figure><img src='token-{i}.png'><figcaption>“{html.escape(token)}”: log p "
                       f"{r['token_logprob'][i]:.2f}, {gain:+.2f} from the image</figcaption></figure>")  # fmt: skip
    (out / "explanation.json").write_text(json.dumps(r, indent=1) + "\n")
    d = r["deletion"]
    page = out / "index.html"
    page.write_text(
        f"<!doctype html><meta charset='utf-8'><title>vlfuse explain (bridge)</title>{render.PAGE_STYLE}"
        f"<h1>{html.escape(r['answer'])}</h1><p>question “{html.escape(r['question'])}” — the image adds "
        f"{r['image_contribution']:+.2f} to the answer's log-probability. Deletion check: removing the top 10 % of "
        f"pixels by attention lowers it by {d['top_logprob_drop']:.2f}, a random 10 % by "
        f"{d['random_logprob_drop']:.2f} ({'passed' if d['passed'] else 'FAILED'}).</p>" + "".join(figures) + "\n"
    )
    return page
