"""Text generation from prompt embeddings with the LM's KV cache: greedy, sampling and beam search, batched.

The prompt is given as embeddings (visual tokens are not token ids), left-padded so that every row's next token is
at the last position. One prefill pass fills the cache; each further step feeds one token per row (or per beam),
reuses the cache and computes logits for the last position only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from vlfuse.config import Section


class GenerationConfig(Section):
    strategy: Literal["greedy", "sample", "beam"] = "greedy"
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)  # sample: logits ÷ temperature
    top_k: int = Field(0, ge=0)  # sample: keep the k most likely tokens (0: all)
    top_p: float = Field(1.0, gt=0, le=1)  # sample: keep the smallest set whose probability reaches p
    num_beams: int = Field(3, ge=1)  # beam
    length_penalty: float = 1.0  # beam: score = log-probability ÷ length ** length_penalty
    seed: int | None = None  # sample: a fixed seed makes sampling repeatable


OnToken = Callable[[int, int], None]  # (row, token id), called as soon as a row's token is chosen


@torch.inference_mode()
def generate(
    lm,
    embeds: Tensor,
    mask: Tensor,
    cfg: GenerationConfig,
    *,
    eos_id: int,
    on_token: OnToken | None = None,
) -> list[list[int]]:
    """Continue each prompt until the end-of-turn token or `cfg.max_new_tokens`.

    Args:
        lm: a transformers causal LM.
        embeds: (B, T, H) prompt embeddings, left-padded.
        mask: (B, T) bool/long, 1 for real positions.
        cfg: strategy and limits.
        eos_id: the token that ends an answer (not included in the result).
        on_token: streaming callback (greedy and sample; beam search reports the final beam token by token).

    Returns:
        per row, the generated token ids without the end token.
    """
    if cfg.strategy == "beam" and cfg.num_beams > 1:
        out = _beam_search(lm, embeds, mask, cfg, eos_id)
        if on_token:
            for row, ids in enumerate(out):
                for token in ids:
                    on_token(row, token)
        return out
    return _sample(lm, embeds, mask, cfg, eos_id, on_token)


def _prefill(lm, embeds: Tensor, mask: Tensor):
    from transformers import DynamicCache

    mask = mask.long()
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # (B, T) left padding: real tokens start at 0
    cache = DynamicCache()
    out = lm(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
        logits_to_keep=1,
    )  # fmt: skip
    return out.logits[:, -1].float(), cache, mask, positions[:, -1:]  # (B, V), cache, (B, T), (B, 1)


def _step(lm, tokens: Tensor, cache, mask: Tensor, position: Tensor) -> Tensor:
    """Feed one token per row (B,); returns the next logits (B, V)."""
    out = lm(
        input_ids=tokens[:, None], attention_mask=mask, position_ids=position, cache=cache, use_cache=True,
        logits_to_keep=1,
    )  # fmt: skip
    return out.logits[:, -1].float()


def _sample(lm, embeds, mask, cfg: GenerationConfig, eos_id: int, on_token: OnToken | None) -> list[list[int]]:
    generator = None
    if cfg.strategy == "sample" and cfg.seed is not None:
        generator = torch.Generator(device=embeds.device).manual_seed(cfg.seed)
    logits, cache, mask, position = _prefill(lm, embeds, mask)
    rows = embeds.shape[0]
    done = torch.zeros(rows, dtype=torch.bool, device=embeds.device)  # (B,)
    out: list[list[int]] = [[] for _ in range(rows)]
    for step in range(cfg.max_new_tokens):
        tokens = _choose(logits, cfg, generator)  # (B,)
        tokens = torch.where(done, torch.full_like(tokens, eos_id), tokens)
        for row in torch.nonzero(~done & (tokens != eos_id)).flatten().tolist():
            out[row].append(int(tokens[row]))
            if on_token:
                on_token(row, int(tokens[row]))
        done |= tokens == eos_id
        if bool(done.all()) or step == cfg.max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, T + step + 1)
        position = position + 1  # (B, 1)
        logits = _step(lm, tokens, cache, mask, position)
    return out


def _choose(logits: Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    """Next token per row (B,) from logits (B, V): argmax, or a draw after temperature / top-k / top-p."""
    if cfg.strategy != "sample":
        return logits.argmax(dim=-1)
    logits = logits / cfg.temperature
    if cfg.top_k:
        kth = logits.topk(min(cfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= cfg.top_p  # keep the first token that crosses p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)  # (B,)


def _beam_search(lm, embeds, mask, cfg: GenerationConfig, eos_id: int) -> list[list[int]]:
    rows, beams = embeds.shape[0], cfg.num_beams
    logits, cache, mask, position = _prefill(lm, embeds, mask)  # (B, V)
    cache.batch_repeat_interleave(beams)  # every beam starts from its row's prompt
    mask = mask.repeat_interleave(beams, dim=0)  # (B·K, T)
    position = position.repeat_interleave(beams, dim=0)  # (B·K, 1)
    logp = logits.log_softmax(-1).repeat_interleave(beams, dim=0)  # (B·K, V)
    vocab = logp.shape[-1]
    scores = torch.full((rows, beams), float("-inf"), device=embeds.device)  # (B, K)
    scores[:, 0] = 0.0  # one live beam at the start, so the first step does not pick the same token K times
    tokens_so_far = torch.zeros(rows * beams, 0, dtype=torch.long, device=embeds.device)  # (B·K, t)
    finished = torch.zeros(rows * beams, dtype=torch.bool, device=embeds.device)  # (B·K,)
    lengths = torch.zeros(rows * beams, device=embeds.device)  # (B·K,) tokens before the end token
    for step in range(cfg.max_new_tokens):
        # a finished beam only continues with the end token, at no cost, so its score stays fixed
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, eos_id] = 0.0
        logp = torch.where(finished[:, None], frozen, logp)
        total = (scores.view(-1, 1) + logp).view(rows, beams * vocab)  # (B, K·V)
        scores, flat = total.topk(beams, dim=-1)  # (B, K)
        origin = flat // vocab + torch.arange(rows, device=embeds.device)[:, None] * beams  # (B, K) source beams
        origin = origin.flatten()  # (B·K,)
        tokens = (flat % vocab).flatten()  # (B·K,)
        was_finished = finished[origin]
        lengths = lengths[origin] + (~was_finished & (tokens != eos_id)).float()
        finished = was_finished | (tokens == eos_id)
        tokens_so_far = torch.cat([tokens_so_far[origin], tokens[:, None]], dim=1)  # (B·K, t + 1)
        if bool(finished.all()) or step == cfg.max_new_tokens - 1:
            break
        cache.reorder_cache(origin)
        mask = torch.cat([mask[origin], torch.ones_like(mask[:, :1])], dim=1)
        position = position[origin] + 1
        logp = _step(lm, tokens, cache, mask, position).log_softmax(-1)  # (B·K, V)
    normalised = scores.flatten() / lengths.clamp(min=1) ** cfg.length_penalty  # (B·K,)
    best = normalised.view(rows, beams).argmax(dim=-1) + torch.arange(rows, device=embeds.device) * beams  # (B,)
    out = []
    for row in best.tolist():
        ids = tokens_so_far[row].tolist()
        out.append(ids[: ids.index(eos_id)] if eos_id in ids else ids)
    return out


# ---------------------------------------------------------------------------------------------- bridge prompts
OnText = Callable[[int, str], None]  # (row, newly generated text)


def prompt_embeddings(model, visual: Tensor, prompts: list[str]) -> tuple[Tensor, Tensor]:
    """Left-padded [user prefix, visual tokens, prompt, assistant header] embeddings (B, T, H) and mask (B, T) of a
    `BridgeModel` for visual tokens (B, N, D) and one prompt per row."""
    if len(prompts) != len(visual):
        raise ValueError(f"{len(prompts)} prompts for {len(visual)} images")
    device = visual.device
    ids = [model.encode_prompt(p) for p in prompts]
    length = max(map(len, ids))
    text = torch.full((len(ids), length), model.pad_id, dtype=torch.long, device=device)  # (B, L)
    text_mask = torch.zeros(len(ids), length, dtype=torch.long, device=device)  # (B, L)
    for b, row in enumerate(ids):
        text[b, length - len(row) :] = torch.tensor(row, device=device)
        text_mask[b, length - len(row) :] = 1
    with torch.inference_mode():
        embeds = model.embed(visual, text)  # (B, P + N + L, H): padding sits between visual and prompt
    fixed = embeds.shape[1] - length  # user prefix + visual tokens, always real
    mask = torch.cat([torch.ones(len(ids), fixed, dtype=torch.long, device=device), text_mask], dim=1)  # (B, T)
    # move each row's padding to the far left so the next token is at the last position for every row
    order = torch.argsort(mask, dim=1, stable=True)  # (B, T): pads first, then real tokens in order
    embeds = torch.gather(embeds, 1, order[..., None].expand_as(embeds))
    return embeds, torch.gather(mask, 1, order)


def _stream_decoder(tokenizer, on_text: OnText) -> OnToken:
    """Wrap a (row, text piece) callback as a (row, token id) one, decoding incrementally per row."""
    tokens: dict[int, list[int]] = {}
    shown: dict[int, str] = {}

    def on_token(row: int, token: int) -> None:
        tokens.setdefault(row, []).append(token)
        text = tokenizer.decode(tokens[row], skip_special_tokens=True)
        piece = text[len(shown.get(row, "")) :]
        shown[row] = text
        if piece:
            on_text(row, piece)

    return on_token


def generate_texts(
    model, visual: Tensor, prompts: list[str], gen: GenerationConfig, on_text: OnText | None = None
) -> list[str]:
    """One generated text per (visual tokens (B, N, D), prompt) pair of a `BridgeModel`; `on_text(row, piece)`
    receives each row's text as it is generated (streaming)."""
    embeds, mask = prompt_embeddings(model, visual, list(prompts))
    streamed = _stream_decoder(model.tokenizer, on_text) if on_text is not None else None
    ids = generate(model.lm, embeds, mask, gen, eos_id=model.eos_id, on_token=streamed)
    return [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]
