"""Pictures and pages of an explanation: heatmap overlays (PNG), words coloured by attribution (HTML), one page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

SCALE = 4  # overlays are drawn at 4× the model's input size (nearest-neighbour), so 64 px inputs stay legible
PAGE_STYLE = (
    "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
    "figure{display:inline-block;margin:0 1em 1em 0}"
    "figcaption{font-size:.85em;max-width:16em}.tok{padding:.1em .25em;border-radius:.2em;margin:0 .05em}"
    "table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}</style>"
)  # the explanation pages' (classifier and bridge)


def _colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] → (H, W, 3) uint8 through matplotlib's "inferno"."""
    from matplotlib import colormaps

    return (colormaps["inferno"](values)[..., :3] * 255).astype(np.uint8)


def display_map(heatmap: Tensor) -> Tensor:
    """(H, W) → [0, 1]: the magnitude of the map over its maximum (zeros stay zeros)."""
    magnitude = heatmap.abs().float()
    top = float(magnitude.max())
    return magnitude / top if top > 0 else magnitude


def image_png(raw_image: Tensor, path: Path) -> None:
    """The model's input (C, H, W) uint8 as a PNG, scaled up."""
    _save(_rgb(raw_image), path)


def overlay_png(raw_image: Tensor, heatmap: Tensor, path: Path | BinaryIO, *, alpha: float = 0.55) -> None:
    """The input (C, H, W) uint8 under a heatmap (H, W), blended, scaled up, as a PNG."""
    strength = display_map(heatmap).cpu().numpy()  # (H, W) in [0, 1]
    heat = _colormap(strength).astype(np.float32)  # (H, W, 3)
    weight = alpha * strength[..., None]  # (H, W, 1): the picture shows through where the map is weak
    blended = (1 - weight) * _rgb(raw_image).astype(np.float32) + weight * heat
    _save(blended.clip(0, 255).astype(np.uint8), path)


def _rgb(raw_image: Tensor) -> np.ndarray:
    pixels = raw_image.permute(1, 2, 0).cpu().numpy()  # (H, W, C)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]


def _save(pixels: np.ndarray, path: Path | BinaryIO) -> None:
    image = Image.fromarray(pixels)
    image.resize((image.width * SCALE, image.height * SCALE), Image.NEAREST).save(path, format="PNG")


def word_spans(tokens: list[str], values: list[float]) -> str:
    """HTML spans, one per token: red for evidence for the label, blue against, opacity by magnitude."""
    top = max((abs(v) for v in values), default=0.0) or 1.0
    spans = []
    for token, value in zip(tokens, values, strict=True):
        rgb = "220,50,47" if value >= 0 else "38,139,210"
        spans.append(f'<span class="tok" style="background: rgba({rgb},{abs(value) / top:.2f})" '
                     f'title="{value:+.4f}">{html.escape(token)}</span>')  # fmt: skip
    return " ".join(spans)


def write_page(result: dict[str, Any], out_dir: Path) -> Path:
    """index.html: the prediction, the modality shares, each pixel map with its check, the coloured words."""
    mod = result.get("modality")
    parts = [
        "<!doctype html><meta charset='utf-8'><title>vlfuse explain</title>",
        PAGE_STYLE,
        f"<h1>{html.escape(result['label'])} <small>({100 * result['probability']:.1f} %)</small></h1>",
        f"<p>run <code>{html.escape(str(result['run']))}</code>; "
        f"image <code>{html.escape(str(result['image']))}</code>; "
        f"text “{html.escape(str(result['text']))}”</p>",
    ]  # fmt: skip
    if mod:
        parts.append(
            f"<h2>Modality contribution (exact Shapley)</h2><p>image {100 * mod['image_share']:.1f} % · text "
            f"{100 * mod['text_share']:.1f} % — φ<sub>image</sub> = {mod['image']:+.4f}, φ<sub>text</sub> = "
            f"{mod['text']:+.4f}; f(both) − f(none) = {mod['f_both'] - mod['f_none']:+.4f} (their sum)</p>"
        )
    if result.get("mm_shap"):
        parts.append(f"<p>MM-SHAP over patches and tokens: image {100 * result['mm_shap']['image_share']:.1f} %</p>")
    if result.get("pixels"):
        parts.append("<h2>Pixels</h2><figure><img src='input.png' alt='input'><figcaption>input</figcaption></figure>")
        for method, entry in result["pixels"].items():
            if "skipped" in entry:
                parts.append(f"<p><b>{method}</b>: not available — {html.escape(entry['skipped'])}</p>")
                continue
            check = entry["deletion"]
            verdict = "passed" if check["passed"] else "FAILED"
            parts.append(
                f"<figure><img src='{method}.png' alt='{method}'><figcaption><b>{method}</b>: removing its top 10 % "
                f"of pixels lowers p by {100 * check['top_drop']:.1f} points, a random 10 % by "
                f"{100 * check['random_drop']:.1f} — deletion check {verdict}</figcaption></figure>"
            )
    words = result.get("words")
    if words:
        parts.append("<h2>Words</h2><table>")
        for method in ("ig", "occlusion"):
            if method in words:
                parts.append(f"<tr><th>{method}</th><td>{word_spans(words['tokens'], words[method])}</td></tr>")
        parts.append("</table><p>red: evidence for the label; blue: against.</p>")
    page = out_dir / "index.html"
    page.write_text("\n".join(parts) + "\n")
    return page


def heatmap_list(heatmap: Tensor) -> list[list[float]]:
    """(H, W) → nested lists rounded to 6 significant digits, for JSON."""
    return [[float(f"{v:.6g}") for v in row] for row in torch.as_tensor(heatmap).float().tolist()]
