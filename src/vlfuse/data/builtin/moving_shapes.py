"""moving-shapes: a generated video QA benchmark whose order questions cannot be answered without frame order.

Every clip shows solid shapes (circle / rectangle / triangle, 1/4–1/3 of the frame side, one of 8 named colours) on
a light background tint. Four clip kinds, equally many of each:

- move: one shape crosses the frame left / right / up / down — "which way does the red circle move?".
- enter/leave: one shape slides in from outside an edge and ends fully inside, or the reverse (the middle frame
  shows it partly in) — "does the red circle enter or leave?" → enters / leaves.
- first mover: two shapes in opposite halves; A moves about half the frame in the first half of the clip, B in the
  second (the middle frame is between the moves) — "which shape moves first?", "which color moves first?".
- sequence: A alone in the frames before the middle one, an empty background in the middle frame, B alone after —
  "which color is shown first?", "which color is shown last?".

Each base clip is followed by its twin: the same frames in reverse order, with the same questions. Order questions
(`ORDER_KINDS`) have different answers on the twin, appearance questions ("what color is the circle?", "what shape
is red?") the same. So any model blind to frame order (a mean over frames, any function of the set of frames) is
right on at most one of each twin pair, and since T is odd the middle frames of a pair are identical, so a
middle-frame model is too: ≤ 50 % on order questions.

Default options (clips 3000, frames 9), any image size: train 6,000 clips (3,000 base + twins), 21,000 rows
(move 4,500, enter/leave 4,500, first mover 6,000, sequence 6,000; 9,000 order + 12,000 appearance); test 2,000
clips, 7,000 rows. Scenes depend on (split, options) only, not on the image size or channels; channels=1 is the
luminance of the colour frames (some colours then look alike).
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch

from vlfuse.config import DataConfig
from vlfuse.data.splits import RawSplit
from vlfuse.errors import DataError

log = logging.getLogger(__name__)

NAME = "moving-shapes"
OPTIONS = {"clips": 3000, "frames": 9}  # base clips in train (test: clips // 3; each doubled by its twin); odd frames
COLORS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "black")
RGB = np.array([(215, 25, 35), (245, 125, 0), (230, 210, 10), (35, 160, 50), (0, 150, 160), (30, 70, 220),
                (140, 40, 180), (20, 20, 20)], dtype=np.float32)  # fmt: skip
# (8, 3) RGB of COLORS: ≥ 87 apart, ≥ 170 from any background tint
SHAPES = ("circle", "rectangle", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "enters": "leaves", "leaves": "enters"}
LABEL_NAMES = [*DIRECTIONS, "enters", "leaves", *COLORS, *SHAPES]
CLIP_KINDS = ("move", "enter_leave", "first_mover", "sequence")
# question kind → its templates ({color} / {shape} slots)
QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "direction": ("which way does the {color} {shape} move?",),
    "enter_leave": ("does the {color} {shape} enter or leave?",),
    "first_shape": ("which shape moves first?",),
    "first_color": ("which color moves first?",),
    "shown_first": ("which color is shown first?",),
    "shown_last": ("which color is shown last?",),
    "color": ("what color is the {shape}?", "what color is the moving shape?"),
    "shape": ("what shape is {color}?", "what shape is moving?"),
}
ORDER_KINDS = frozenset({"direction", "enter_leave", "first_shape", "first_color", "shown_first", "shown_last"})
_SEEDS = {"train": 1729, "test": 4104}
_MARGIN = 0.02  # from the frame edge, in frame sides
_BACKGROUND = (228.0, 255.0)  # each channel of the light tint


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{color\}", "{color}").replace(r"\{shape\}", "{shape}")
    pattern = pattern.format(color=f"(?:{'|'.join(COLORS)})", shape=f"(?:{'|'.join(SHAPES)})")
    return re.compile("^" + pattern.removesuffix(r"\?") + r"\s*\??$")  # the question mark may be left out


_PATTERNS = [(_compile(t), kind) for kind, templates in QUESTION_TEMPLATES.items() for t in templates]


def question_kind(question: str) -> str:
    """The kind (a key of `QUESTION_TEMPLATES`) of a question this module asks (any case, "?" optional).

    Raises:
        DataError: the question follows none of the templates.
    """
    text = question.strip().lower()
    for pattern, kind in _PATTERNS:
        if pattern.match(text):
            return kind
    raise DataError(f"{NAME}: {question!r} follows none of the question templates (moving_shapes.QUESTION_TEMPLATES)")


def _options(cfg: DataConfig) -> tuple[int, int]:
    unknown = sorted(set(cfg.options) - set(OPTIONS))
    if unknown:
        raise DataError(f"data.options: unknown key(s) {', '.join(unknown)} for {NAME!r}; valid: {', '.join(OPTIONS)}")
    opts = {**OPTIONS, **cfg.options}
    clips, frames = opts["clips"], opts["frames"]
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise DataError(f"data.options.clips must be a whole number >= 1, got {clips!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 3 or frames % 2 == 0:
        raise DataError(f"data.options.frames must be an odd whole number >= 3 (a shared middle frame), got {frames!r}")
    return clips, frames


class _Scenes:
    """The base clips of one split in frame coordinates (x right, y down, the frame is [0, 1]²); slot 0 is shape A."""

    def __init__(self, rng: np.random.Generator, n: int, frames: int) -> None:
        self.frames, u = frames, np.linspace(0.0, 1.0, frames)  # (T,)
        self.kind = rng.permutation(np.arange(n) % len(CLIP_KINDS))  # (n,) equally many of each kind
        first_color, first_shape = rng.integers(0, 8, n), rng.integers(0, 3, n)  # B differs from A in both
        self.color = np.stack([first_color, (first_color + rng.integers(1, 8, n)) % 8], axis=1)  # (n, 2)
        self.shape = np.stack([first_shape, (first_shape + rng.integers(1, 3, n)) % 3], axis=1)  # (n, 2)
        r = rng.uniform(0.125, 0.165, (n, 2))  # half side
        wide = rng.random((n, 2)) < 0.5
        rect = np.stack([np.where(wide, r, 0.72 * r), np.where(wide, 0.72 * r, r)], axis=-1)
        scale = np.array([(1.0, 1.0), (1.0, 1.0), (1.15, 1.1)])[self.shape]  # (n, 2, 2) triangles drawn larger
        self.half = np.where((self.shape == 1)[..., None], rect, r[..., None] * scale)  # (n, 2, 2) half (w, h)
        self.background = rng.uniform(*_BACKGROUND, (n, 3)).astype(np.float32)  # (n, 3)
        self.center = np.zeros((n, frames, 2, 2))  # (n, T, slot, xy)
        self.visible = np.zeros((n, frames, 2), dtype=bool)  # (n, T, slot)
        self.answer = np.empty(n, dtype=object)  # move: direction; enter_leave: enters / leaves
        mid = frames // 2
        for k, kind in enumerate(CLIP_KINDS):
            rows = np.flatnonzero(self.kind == k)
            getattr(self, f"_{kind}")(rng, rows, u, mid)

    def _span(self, rng: np.random.Generator, rows: np.ndarray, slot: int, axis: np.ndarray) -> np.ndarray:
        """A random centre coordinate along `axis` keeping the shape inside the frame."""
        e = self.half[rows, slot, axis]
        return rng.uniform(e + _MARGIN, 1 - e - _MARGIN)

    def _set(self, rows: np.ndarray, slot: int, axis: np.ndarray, along: np.ndarray, across: np.ndarray) -> None:
        """Centres from a coordinate along `axis` (n, T) and one across it (n,) or (n, T)."""
        across = np.broadcast_to(np.asarray(across).reshape(len(rows), -1), along.shape)
        horizontal = (axis == 0)[:, None]
        self.center[rows, :, slot, 0] = np.where(horizontal, along, across)
        self.center[rows, :, slot, 1] = np.where(horizontal, across, along)

    def _move(self, rng: np.random.Generator, rows: np.ndarray, u: np.ndarray, mid: int) -> None:
        direction = rng.permutation(np.arange(len(rows)) % 4)  # left, right, up, down: equally many
        axis, sign = direction // 2, np.where(direction % 2 == 1, 1.0, -1.0)
        e = self.half[rows, 0, axis]
        lo, hi = e + _MARGIN + rng.uniform(0, 0.08, len(rows)), 1 - e - _MARGIN - rng.uniform(0, 0.08, len(rows))
        start, end = np.where(sign > 0, lo, hi), np.where(sign > 0, hi, lo)
        self._set(rows, 0, axis, start[:, None] + (end - start)[:, None] * u, self._span(rng, rows, 0, 1 - axis))
        self.visible[rows, :, 0] = True
        self.answer[rows] = np.array(DIRECTIONS)[direction]

    def _enter_leave(self, rng: np.random.Generator, rows: np.ndarray, u: np.ndarray, mid: int) -> None:
        edge = rng.permutation(np.arange(len(rows)) % 4)  # left, right, top, bottom edge
        axis, far = edge // 2, edge % 2 == 1
        enters = rng.permutation(np.arange(len(rows)) % 2 == 0)
        e = self.half[rows, 0, axis]
        shown = rng.uniform(0.5, 0.8, len(rows))  # the part of the shape inside the frame in the middle frame
        outside, inside = -e - 0.04, e * (4 * shown - 1) + 0.04  # centres: fully out, fully in (linear motion)
        along = outside[:, None] + (inside - outside)[:, None] * u  # (n, T) entering from coordinate 0
        along = np.where(far[:, None], 1 - along, along)
        along = np.where(enters[:, None], along, along[:, ::-1])
        self._set(rows, 0, axis, along, self._span(rng, rows, 0, 1 - axis))
        self.visible[rows, :, 0] = True
        self.answer[rows] = np.where(enters, "enters", "leaves")

    def _first_mover(self, rng: np.random.Generator, rows: np.ndarray, u: np.ndarray, mid: int) -> None:
        split = rng.integers(0, 2, len(rows))  # the halves are left / right (0) or top / bottom (1)
        half_a = rng.integers(0, 2, len(rows))
        t = np.arange(self.frames) / mid  # (T,) 0 … 2
        for slot, when in ((0, np.minimum(t, 1.0)), (1, np.maximum(t - 1.0, 0.0))):  # A in the first half, B after
            side = half_a if slot == 0 else 1 - half_a
            e = self.half[rows, slot, split]
            across = side * 0.5 + rng.uniform(e + _MARGIN, 0.5 - e - _MARGIN)
            e = self.half[rows, slot, 1 - split]
            dist = rng.uniform(0.4, 0.55, len(rows))  # about half the frame: a move a 2 × 2 feature grid still sees
            start = rng.uniform(e + _MARGIN, 1 - e - _MARGIN - dist)
            start, end = np.where(rng.random(len(rows)) < 0.5, (start, start + dist), (start + dist, start))
            self._set(rows, slot, 1 - split, start[:, None] + (end - start)[:, None] * when, across)
        self.visible[rows] = True

    def _sequence(self, rng: np.random.Generator, rows: np.ndarray, u: np.ndarray, mid: int) -> None:
        x_axis, y_axis = np.zeros(len(rows), dtype=int), np.ones(len(rows), dtype=int)
        for slot, frames in ((0, slice(0, mid)), (1, slice(mid + 1, None))):
            x = np.repeat(self._span(rng, rows, slot, x_axis)[:, None], self.frames, axis=1)
            self._set(rows, slot, x_axis, x, self._span(rng, rows, slot, y_axis))
            self.visible[rows, frames, slot] = True

    def questions(self, i: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
        """(question, answer, the twin's answer) of base clip i."""
        kind = CLIP_KINDS[self.kind[i]]
        (ca, cb), (sa, sb) = (COLORS[c] for c in self.color[i]), (SHAPES[s] for s in self.shape[i])
        if kind in ("move", "enter_leave"):
            template = QUESTION_TEMPLATES["direction" if kind == "move" else "enter_leave"][0]
            answer = str(self.answer[i])
            color_q, shape_q = (QUESTION_TEMPLATES[k][int(rng.integers(0, 2))] for k in ("color", "shape"))
            return [
                (template.format(color=ca, shape=sa), answer, OPPOSITE[answer]),
                (color_q.format(shape=sa), ca, ca),
                (shape_q.format(color=ca), sa, sa),
            ]
        if kind == "first_mover":
            order = [("which shape moves first?", sa, sb), ("which color moves first?", ca, cb)]
        else:
            order = [("which color is shown first?", ca, cb), ("which color is shown last?", cb, ca)]
        c_slot, s_slot = rng.integers(0, 2, 2)  # which shape the appearance questions are about
        color_of, shape_of = (ca, cb)[c_slot], (sa, sb)[s_slot]
        return [
            *order,
            (QUESTION_TEMPLATES["color"][0].format(shape=(sa, sb)[c_slot]), color_of, color_of),
            (QUESTION_TEMPLATES["shape"][0].format(color=(ca, cb)[s_slot]), shape_of, shape_of),
        ]

    def render(self, size: int, chunk: int = 128) -> np.ndarray:
        """(n, T, 3, S, S) uint8 frames, drawn with light anti-aliasing (coverage from a signed distance)."""
        n, frames = len(self.kind), self.frames
        out = np.empty((n, frames, 3, size, size), dtype=np.uint8)
        g = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
        for lo in range(0, n, chunk):
            rows = slice(lo, min(lo + chunk, n))
            image = np.broadcast_to(self.background[rows, None, :, None, None], (rows.stop - lo, frames, 3, size, size))
            image = image.copy()  # (b, T, 3, S, S)
            for slot in (0, 1):  # cover: (b, T, S, S)
                cover = _coverage(self.shape[rows, slot], self.center[rows, :, slot] * size,
                                  self.half[rows, slot] * size, self.visible[rows, :, slot], g)  # fmt: skip
                color = RGB[self.color[rows, slot]][:, None, :, None, None]  # (b, 1, 3, 1, 1)
                image += (color - image) * cover[:, :, None]
            out[rows] = np.rint(image).astype(np.uint8)
        return out


def _coverage(
    shape: np.ndarray, center: np.ndarray, half: np.ndarray, visible: np.ndarray, g: np.ndarray
) -> np.ndarray:
    """How much of each pixel a shape covers, (b, T, S, S) in [0, 1], from its signed distance in pixels.

    Args:
        shape: (b,) shape index; center: (b, T, 2) pixels; half: (b, 2) half width / height in pixels;
        visible: (b, T); g: (S,) pixel centre coordinates.
    """
    b, frames, size = *visible.shape, len(g)
    cover = np.zeros((b, frames, size, size), dtype=np.float32)
    for k in range(len(SHAPES)):
        ci, ti = np.nonzero(visible & (shape == k)[:, None])  # the drawn objects of this shape
        if len(ci) == 0:
            continue
        dx = g[None, None, :] - center[ci, ti, 0, None, None].astype(np.float32)  # (K, 1, S)
        dy = g[None, :, None] - center[ci, ti, 1, None, None].astype(np.float32)  # (K, S, 1)
        hx, hy = (half[ci, j, None, None].astype(np.float32) for j in (0, 1))  # (K, 1, 1)
        if SHAPES[k] == "circle":
            dist = np.sqrt(dx**2 + dy**2) - hx
        elif SHAPES[k] == "rectangle":
            dist = np.maximum(np.abs(dx) - hx, np.abs(dy) - hy)
        else:  # triangle, apex up: the base and the two sides, each as a signed distance to its line
            norm = np.sqrt(4 * hy**2 + hx**2)
            dist = np.maximum(dy - hy, (2 * hy * np.abs(dx) - hx * (dy + hy)) / norm)
        cover[ci, ti] = np.clip(0.5 - dist, 0.0, 1.0)  # (K, S, S)
    return cover


def load(split: str, cfg: DataConfig) -> RawSplit:
    """Questions (text column "question") and answers (label "answer") on generated clips, base clip then twin.

    `images` is (M, T, C, S, S) uint8: M clips of T frames; clip 2i + 1 is clip 2i reversed in time.
    """
    if split not in _SEEDS:
        raise DataError(f"{NAME}: unknown split {split!r}; expected 'train' or 'test'")
    clips, frames = _options(cfg)
    n = clips if split == "train" else max(1, clips // 3)
    rng = np.random.default_rng(_SEEDS[split])
    scenes = _Scenes(rng, n, frames)
    base = scenes.render(cfg.image_size)  # (n, T, 3, S, S)
    if cfg.channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None, None]
        base = np.rint((base * weights).sum(axis=2, keepdims=True)).astype(np.uint8)  # (n, T, 1, S, S)
    images = np.empty((2 * n, *base.shape[1:]), dtype=np.uint8)  # (M, T, C, S, S)
    images[0::2], images[1::2] = base, base[:, ::-1]
    texts, labels, image_index = [], [], []
    for i in range(n):
        asked = scenes.questions(i, rng)
        for clip, column in ((2 * i, 1), (2 * i + 1, 2)):
            texts += [[q[0]] for q in asked]
            labels += [q[column] for q in asked]
            image_index += [clip] * len(asked)
    log.info("%s %s: %d questions on %d clips of %d frames", NAME, split, len(texts), 2 * n, frames)
    return RawSplit(
        file=f"{NAME}:{split}",
        images=torch.from_numpy(images),
        image_index=torch.tensor(image_index, dtype=torch.long),  # (N,)
        texts=texts,
        labels=labels,
        image_sources=[f"{NAME}:{split}/{c}" for c in range(2 * n)],
        source_rows=list(range(len(texts))),
        text_columns=["question"],
        label_column="answer",
        label_names=list(LABEL_NAMES),
        groups=torch.tensor(image_index, dtype=torch.long) // 2,  # (N,) a clip and its twin: never split apart
    )
