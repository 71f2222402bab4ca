"""Contact sheets: a PNG showing a query and its top-k results with scores."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vlfuse.retrieval.index import SearchHit
from vlfuse.retrieval.sources import thumbnail

TILE = 112  # pixels per result image (nearest-neighbour upscaling keeps small images crisp)
TEXT_H = 34
PAD = 6


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _tile(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
    if max(image.size) < TILE:
        scale = TILE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.NEAREST)  # fmt: skip
    return image


def _short(source: str, label: str | None, width: int = 20) -> str:
    name = label or Path(source).name or source
    return name if len(name) <= width else name[: width - 1] + "…"


def image_results_sheet(query: str | Image.Image, hits: list[SearchHit], path: str | Path, *, root: str | None = None,
                        columns: int = 5) -> Path:  # fmt: skip
    """Query (text or image) on the left, then the hit images in a grid, each with rank, score and label/source."""
    font = _font()
    columns = max(1, min(columns, len(hits)))
    rows = max(1, -(-len(hits) // columns))
    left = TILE + 2 * PAD
    width = left + columns * (TILE + PAD) + PAD
    height = PAD + rows * (TILE + TEXT_H + PAD)
    sheet = Image.new("RGB", (width, max(height, TILE + TEXT_H + 2 * PAD)), "white")
    draw = ImageDraw.Draw(sheet)
    if isinstance(query, Image.Image):
        sheet.paste(_tile(query), (PAD, PAD))
        draw.text((PAD, PAD + TILE + 2), "query image", fill="black", font=font)
    else:
        draw.text((PAD, PAD), "query:\n" + "\n".join(textwrap.wrap(query, 18)[:8]), fill="black", font=font)
    for i, hit in enumerate(hits):
        x = left + (i % columns) * (TILE + PAD)
        y = PAD + (i // columns) * (TILE + TEXT_H + PAD)
        sheet.paste(_tile(thumbnail(hit.source, root=root)), (x, y))
        draw.text((x, y + TILE + 2), f"#{hit.rank}  {hit.score:.3f}", fill="black", font=font)
        draw.text((x, y + TILE + 16), _short(hit.source, hit.label), fill="dimgray", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def text_results_sheet(query: Image.Image | str, hits: list[SearchHit], path: str | Path) -> Path:
    """Query image (or text) on the left, the ranked texts with scores on the right."""
    font = _font()
    lines = [f"#{h.rank}  {h.score:.3f}  {h.label or h.source}" for h in hits]
    height = max(TILE + 2 * PAD, PAD + 16 * sum(line.count("\n") + 1 for line in lines) + PAD)
    sheet = Image.new("RGB", (TILE + 3 * PAD + 420, height), "white")
    draw = ImageDraw.Draw(sheet)
    if isinstance(query, Image.Image):
        sheet.paste(_tile(query), (PAD, PAD))
    else:
        draw.text((PAD, PAD), "\n".join(textwrap.wrap(query, 18)[:8]), fill="black", font=font)
    draw.multiline_text((TILE + 2 * PAD, PAD), "\n".join(lines), fill="black", font=font, spacing=4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
