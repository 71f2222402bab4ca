"""moving-shapes: shapes and determinism of the generated split, the twin guarantees that make order questions
unanswerable without frame order (reversed frames, shared middle frame, same question and another answer), the
pixels behind the answers, and balance."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from vlfuse.config import DataConfig
from vlfuse.data.builtin import moving_shapes as ms
from vlfuse.data.splits import RawSplit
from vlfuse.errors import DataError

CLIPS, FRAMES = 40, 9
MID = FRAMES // 2
SEEN = 5  # each pixel test checks at least this many clips


def load(split: str = "train", size: int = 32, channels: int = 3, **options: int) -> RawSplit:
    cfg = DataConfig(name="table", image_size=size, channels=channels, options={"clips": CLIPS, **options})
    return ms.load(split, cfg)


@pytest.fixture(scope="module")
def train() -> RawSplit:
    return load()


def rows_of(raw: RawSplit) -> dict[int, list[tuple[str, str]]]:
    """clip → its (question, answer) rows."""
    out: dict[int, list[tuple[str, str]]] = {}
    for clip, text, label in zip(raw.image_index.tolist(), raw.texts, raw.labels, strict=True):
        out.setdefault(clip, []).append((text[0], label))
    return out


def clips_with(raw: RawSplit, kind: str) -> list[tuple[int, str, str]]:
    """(clip, question, answer) of every row of a question kind."""
    return [(c, q, a) for c, rows in rows_of(raw).items() for q, a in rows if ms.question_kind(q) == kind]


def background(frames: np.ndarray) -> np.ndarray:
    """The most common pixel of a clip (T, C, S, S): its background, (C,)."""
    pixels = frames.transpose(0, 2, 3, 1).reshape(-1, frames.shape[1])
    values, counts = np.unique(pixels, axis=0, return_counts=True)
    return values[counts.argmax()]


def shape_mask(frames: np.ndarray) -> np.ndarray:
    """(T, S, S) pixels that differ from the background."""
    return (frames != background(frames)[None, :, None, None]).any(axis=1)


def color_mask(frames: np.ndarray, color: str) -> np.ndarray:
    """(T, S, S) pixels of exactly the named colour (fully covered by a shape of that colour)."""
    rgb = ms.RGB[ms.COLORS.index(color)].astype(np.uint8)
    return (frames == rgb[None, :, None, None]).all(axis=1)


def test_split_shapes_and_fields(train) -> None:
    n_clips = 2 * CLIPS
    assert train.images.shape == (n_clips, FRAMES, 3, 32, 32) and train.images.dtype == torch.uint8
    n = len(train)
    assert train.image_index.shape == (n,) and train.image_index.dtype == torch.long
    assert set(train.image_index.tolist()) == set(range(n_clips))
    assert len(train.texts) == len(train.labels) == n and all(len(t) == 1 for t in train.texts)
    assert train.source_rows == list(range(n)) and train.file == "moving-shapes:train"
    assert train.image_sources == [f"moving-shapes:train/{c}" for c in range(n_clips)]
    assert (train.text_columns, train.label_column, train.label_names) == (["question"], "answer", ms.LABEL_NAMES)
    assert 3 * n_clips <= n <= 4 * n_clips
    test = load("test")
    assert test.images.shape[0] == 2 * (CLIPS // 3) and test.file == "moving-shapes:test"


def test_deterministic_and_splits_differ(train) -> None:
    again = load()
    assert torch.equal(again.images, train.images) and again.texts == train.texts and again.labels == train.labels
    test = load("test", clips=3 * CLIPS)  # as many clips as train
    assert not torch.equal(test.images[: len(train.images)], train.images)


@pytest.mark.parametrize("options", [{"frames": 8}, {"frames": 1}, {"frames": 2}, {"frames": "9"}, {"clips": 0},
                                     {"clips": 1.5}, {"clips": True}, {"fps": 3}])  # fmt: skip
def test_options_validated(options) -> None:
    with pytest.raises(DataError, match="data.options"):
        load(**options)


def test_unknown_split_and_question() -> None:
    with pytest.raises(DataError, match="unknown split 'val'"):
        load("val")
    with pytest.raises(DataError, match="follows none of the question templates"):
        ms.question_kind("what is the weather like?")
    assert ms.question_kind("which way does the red circle move?") == "direction"
    assert ms.question_kind(" Does the red circle enter or leave ") == "enter_leave"  # as tokenizers may see it


def test_twins_reverse_frames_and_share_middle_frame(train) -> None:
    images = train.images
    base, twin = images[0::2], images[1::2]  # (n, T, C, S, S)
    assert torch.equal(twin, base.flip(1))
    assert torch.equal(twin[:, MID], base[:, MID])
    assert torch.equal(twin.double().mean(1), base.double().mean(1))  # any order-blind summary agrees


def test_twins_same_questions_order_answers_differ(train) -> None:
    rows = rows_of(train)
    n_order = 0
    for clip in range(0, len(train.images), 2):
        base, twin = rows[clip], rows[clip + 1]
        assert [q for q, _ in base] == [q for q, _ in twin]
        for (question, a), (_, b) in zip(base, twin, strict=True):
            if ms.question_kind(question) in ms.ORDER_KINDS:
                assert a != b, question
                n_order += 1
            else:
                assert a == b, question
    assert n_order >= len(train.images) // 2  # every clip has an order question


def test_question_kinds_and_answers(train) -> None:
    expected = {
        "direction": set(ms.DIRECTIONS), "enter_leave": {"enters", "leaves"}, "first_shape": set(ms.SHAPES),
        "shape": set(ms.SHAPES), **{k: set(ms.COLORS) for k in ("first_color", "shown_first", "shown_last", "color")},
    }  # fmt: skip
    assert set(expected) == set(ms.QUESTION_TEMPLATES) and ms.ORDER_KINDS < set(expected)
    assert set(expected) - ms.ORDER_KINDS == {"color", "shape"}
    seen = Counter()
    for (question,), answer in zip(train.texts, train.labels, strict=True):
        kind = ms.question_kind(question)
        assert answer in expected[kind], (question, answer)
        seen[kind] += 1
    assert set(seen) == set(expected)
    assert set(train.labels) <= set(ms.LABEL_NAMES) and len(set(ms.LABEL_NAMES)) == len(ms.LABEL_NAMES)


def test_balance() -> None:
    raw = load(clips=80)
    first = {c: ms.question_kind(rows[0][0]) for c, rows in rows_of(raw).items()}  # the clip kind's order question
    assert set(Counter(first.values()).values()) == {40}  # 4 kinds × 20 base clips × 2
    directions = Counter(a for _, _, a in clips_with(raw, "direction"))
    assert set(directions.values()) == {10}
    assert set(Counter(a for _, _, a in clips_with(raw, "enter_leave")).values()) == {20}
    colors = Counter(a for _, _, a in clips_with(raw, "color"))
    assert set(colors) == set(ms.COLORS) and max(colors.values()) < 4 * min(colors.values())


def test_move_centroid_follows_the_answer(train) -> None:
    found = clips_with(train, "direction")
    assert len(found) >= SEEN
    for clip, question, answer in found:
        mask = shape_mask(train.images[clip].numpy())  # (T, S, S)
        ys, xs = np.indices(mask.shape[1:])
        centre = np.array([[xs[m].mean(), ys[m].mean()] for m in mask])  # (T, 2)
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[answer]  # y grows downwards
        step = np.diff(centre[:, axis]) * sign
        assert (step > 0.5).all(), (question, answer, centre)
        assert np.ptp(centre[:, 1 - axis]) < 0.5


def test_enter_leave_pixels(train) -> None:
    found = clips_with(train, "enter_leave")
    assert len(found) >= SEEN
    for clip, _, answer in found:
        mask = shape_mask(train.images[clip].numpy())
        outside, inside = (0, -1) if answer == "enters" else (-1, 0)
        assert mask[outside].sum() == 0 and mask[inside].sum() > 30
        middle = mask[MID]
        touches = middle[0].any() or middle[-1].any() or middle[:, 0].any() or middle[:, -1].any()
        assert touches and 0 < middle.sum() < mask[inside].sum()  # partly in


def test_first_mover_pixels(train) -> None:
    checked = 0
    for clip, rows in rows_of(train).items():
        answers = dict(rows)
        if "which color moves first?" not in answers:
            continue
        checked += 1
        frames = train.images[clip].numpy()
        colors = {a for q, a in rows if ms.question_kind(q) in ("color", "first_color")}
        first = answers["which color moves first?"]
        (other,) = colors - {first} if len(colors) == 2 else [None]
        a_mask = color_mask(frames, first)
        assert not np.array_equal(a_mask[0], a_mask[MID]) and (a_mask[MID:] == a_mask[MID]).all()
        if other is not None:
            b_mask = color_mask(frames, other)
            assert (b_mask[: MID + 1] == b_mask[0]).all() and not np.array_equal(b_mask[MID], b_mask[-1])
    assert checked >= SEEN


def test_sequence_pixels(train) -> None:
    checked = 0
    for clip, rows in rows_of(train).items():
        answers = dict(rows)
        if "which color is shown first?" not in answers:
            continue
        checked += 1
        frames = train.images[clip].numpy()
        bg = background(frames)
        assert (frames[MID] == bg[:, None, None]).all()  # the middle frame is the bare background
        first, last = answers["which color is shown first?"], answers["which color is shown last?"]
        assert color_mask(frames[:MID], first).any(axis=(1, 2)).all() and not color_mask(frames[:MID], last).any()
        assert color_mask(frames[MID + 1 :], last).any(axis=(1, 2)).all() and not color_mask(frames[MID:], first).any()
    assert checked >= SEEN


def test_shape_colour_is_nearest_the_named_colour(train) -> None:
    rows, checked = rows_of(train), 0
    for clip, question, answer in clips_with(train, "color"):
        if ms.question_kind(rows[clip][0][0]) not in ("direction", "enter_leave"):
            continue  # one shape in the clip: all its pixels are the answer's colour
        checked += 1
        frames = train.images[clip].numpy()
        mask = shape_mask(frames)
        pixels = frames.transpose(0, 2, 3, 1)[mask].astype(float)  # (P, 3)
        values, counts = np.unique(pixels, axis=0, return_counts=True)
        fill = values[counts.argmax()]  # the fully covered pixels
        assert ms.COLORS[int(np.linalg.norm(ms.RGB - fill, axis=1).argmin())] == answer, question
        median = np.median(pixels, axis=0)
        assert ms.COLORS[int(np.linalg.norm(ms.RGB - median, axis=1).argmin())] == answer, question
    assert checked >= SEEN


def test_one_channel_and_size_64(train) -> None:
    gray = load(channels=1)
    assert gray.images.shape == (2 * CLIPS, FRAMES, 1, 32, 32) and gray.texts == train.texts
    luminance = (train.images.double() * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
    assert (gray.images.double() - luminance).abs().max() <= 1
    big = load(size=64, clips=8)
    assert big.images.shape == (16, FRAMES, 3, 64, 64)
    assert torch.equal(big.images[1::2], big.images[0::2].flip(1))
    assert big.texts == load(clips=8).texts  # the same scenes at any size


def test_a_clip_and_its_twin_stay_on_one_side_of_the_validation_split_and_the_row_limit():
    """A validation clip whose reversed twin is in training would be answered from memory, with the twin's (opposite)
    answer: the twins must never straddle the split."""
    from vlfuse.config import VideoDataConfig
    from vlfuse.data.prepare import prepare_data

    data = prepare_data(VideoDataConfig(options={"clips": 40, "frames": 5}, val_fraction=0.3, limit=90), seed=0)

    def pairs(split) -> set[int]:
        return {int(source.rsplit("/", 1)[1]) // 2 for source in split.image_sources}

    assert len(data.train) + len(data.val) == 90
    assert pairs(data.train) and pairs(data.val) and not pairs(data.train) & pairs(data.val)
    assert len(data.val.image_sources) == 2 * len(pairs(data.val))  # whole pairs: both clips of every pair
    assert len(data.train.image_sources) >= 2 * len(pairs(data.train)) - 1  # the row limit may cut one pair
