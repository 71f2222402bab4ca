"""One example's explanation: modality contribution, pixel maps and word scores, each with its check; written as
PNG overlays, a JSON of the numbers and an HTML page (`vlfuse explain RUN --image X --text "..."`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vlfuse.explain import attribution, checks, render
from vlfuse.explain.modality import modality_shapley, token_patch_shapley
from vlfuse.explain.target import ExplainInput, prepare_input, unk_id

METHODS = ("gradcam", "ig", "occlusion", "attention")
DEFAULT_METHODS = ("gradcam", "ig")


@dataclass
class Explanation:
    """The numbers (`result`, what explanation.json holds) and the maps behind the pictures."""

    result: dict[str, Any]
    example: ExplainInput
    maps: dict[str, Tensor] = field(default_factory=dict)  # method → (H, W)


def parse_methods(methods: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(m.strip() for m in methods.split(",") if m.strip()) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown --method '{','.join(unknown)}'; expected a comma-separated list of "
                         f"{', '.join(METHODS)}")  # fmt: skip
    return names


def explain_example(
    run, image: str | Path | Tensor | None, text: str | None, *, methods=DEFAULT_METHODS, label: str | None = None,
    steps: int = 32, mm_shap: bool = False, sanity: bool = False,
) -> Explanation:  # fmt: skip
    """Explain one prediction of a classify-like run (classify, moderate).

    Args:
        run: a loaded `ClassifyRun` (or subclass).
        image, text: the input; either may be missing when the model can do without it.
        methods: pixel methods among METHODS (attention only for attention-based fusions).
        label: the label explained (default: the predicted one).
        steps: Integrated Gradients steps (pixels and words).
        mm_shap: also the MM-SHAP-style share over patches and tokens (Captum permutation sampling; slower).
        sanity: also the model-randomization check of every pixel map (Spearman with a re-initialised model's map).
    """
    methods = parse_methods(methods)
    model, objective = run.model, run.objective
    x = prepare_input(run, image, text, label=label)
    timings: dict[str, float] = {}
    result: dict[str, Any] = {
        "run": str(run.path), "task": run.task, "text": text,
        "image": str(image) if isinstance(image, (str, Path)) else None,
        "label": x.label, "probability": x.probability, "probabilities": x.probabilities, "pixels": {},
    }  # fmt: skip
    if hasattr(run, "calibrated"):  # a moderation run: its decisions use calibrated probabilities (monotone per label)
        images = [x.raw_image] if x.raw_image is not None else None  # decoded once, by prepare_input
        texts = [text] if text is not None else None
        result["calibrated_probability"] = float(run.predict_proba(images, texts)[0, x.target])
    unk = unk_id(run)
    both = x.batch.image is not None and x.batch.text_ids is not None
    start = time.perf_counter()
    if both:
        values = modality_shapley(model, objective, x.batch, torch.tensor([x.target])).row()
        values["efficiency_error"] = abs(values["image"] + values["text"] - (values["f_both"] - values["f_none"]))
        values["removed_by"] = "placeholder"  # a model reading both modalities always has them
        result["modality"] = values
        timings["modality"] = time.perf_counter() - start
        if mm_shap:
            start = time.perf_counter()
            shap = token_patch_shapley(model, objective, x.batch, x.target, unk_id=unk)
            result["mm_shap"] = {
                "image_share": shap["image_share"],
                "text_share": shap["text_share"],
                "patches": render.heatmap_list(shap["patches"]),
                "tokens": shap["tokens"].tolist(),
            }
            timings["mm_shap"] = time.perf_counter() - start
    maps: dict[str, Tensor] = {}
    if x.batch.image is not None:
        random_model = checks.randomized_copy(model) if sanity else None
        for method in methods:
            start = time.perf_counter()
            entry, heat = _pixel_entry(method, model, objective, x, steps)
            if heat is None:
                result["pixels"][method] = entry
                continue
            entry["deletion"] = checks.deletion_check(model, objective, x.batch, x.target, evidence_map(method, heat))
            if random_model is not None:
                random_heat = _pixel_entry(method, random_model, objective, x, steps)[1]
                entry["randomization_spearman"] = checks.spearman(
                    evidence_map(method, heat), evidence_map(method, random_heat)
                )
            timings[method] = time.perf_counter() - start
            entry["map"] = render.heatmap_list(heat)
            result["pixels"][method] = entry
            maps[method] = heat
    if x.tokens:
        start = time.perf_counter()
        vocab = run.tokenizer.vocab_size
        ig, delta = attribution.word_integrated_gradients(model, objective, x.batch, x.target, vocab_size=vocab,
                                                          unk_id=unk, steps=steps)  # fmt: skip
        occ = attribution.word_occlusion(model, objective, x.batch, x.target, unk_id=unk)
        result["words"] = {"tokens": x.tokens, "ig": ig.tolist(), "ig_convergence_delta": delta,
                           "occlusion": occ.tolist()}  # fmt: skip
        timings["words"] = time.perf_counter() - start
    result["seconds"] = timings
    return Explanation(result, x, maps)


def evidence_map(method: str, heat: Tensor) -> Tensor:
    """The map as evidence for the label: Integrated Gradients' magnitudes (the sign says for or against), the
    others as they are (Grad-CAM is ReLU'd; occlusion is the drop, positive for evidence)."""
    return heat.abs() if method == "ig" else heat


def _pixel_entry(method: str, model, objective, x: ExplainInput, steps: int) -> tuple[dict[str, Any], Tensor | None]:
    """(JSON entry, (H, W) map); the map is None when the method does not apply to this model (the entry says why)."""
    if method == "attention":
        maps = attribution.attention_maps(model, x.batch)
        if not maps or not x.token_positions:
            return {"skipped": "no attention over image tokens in this fusion"}, None
        layer, weights = next(reversed(maps.items()))  # the last attention layer over the image
        heat = attribution.attention_pixel_map(weights, x.token_positions, tuple(x.batch.image.shape[2:]))
        per_word = weights[x.token_positions]  # (L_real, N)
        return {"layer": layer, "per_token": [[round(v, 6) for v in row] for row in per_word.tolist()]}, heat
    if method == "ig":
        heat, delta = attribution.integrated_gradients(model, objective, x.batch, x.target, steps=steps)
        return {"steps": steps, "convergence_delta": delta}, heat
    return {}, attribution.pixel_map(method, model, objective, x.batch, x.target, steps=steps)


def write_explanation(explanation: Explanation, out_dir: str | Path) -> Path:
    """explanation.json, input.png, one <method>.png overlay per pixel map and index.html into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = explanation.example.raw_image
    if raw is not None:
        render.image_png(raw, out / "input.png")
        for method, heat in explanation.maps.items():
            render.overlay_png(raw, evidence_map(method, heat), out / f"{method}.png")
    (out / "explanation.json").write_text(json.dumps(explanation.result, indent=1) + "\n")
    return render.write_page(explanation.result, out)
