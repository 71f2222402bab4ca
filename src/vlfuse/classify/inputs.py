"""Which inputs a classifier was given, checked one way for the PyTorch run (`ClassifyRun.make_batch`) and the ONNX
runtime (`vlfuse.export.runtime`, which runs without torch)."""

from __future__ import annotations

from collections.abc import Sequence


def check_inputs(
    has_image: Sequence[bool],
    has_text: Sequence[bool],
    texts: Sequence[str | None] | None,
    *,
    reads_image: bool,
    reads_text: bool,
    placeholders: bool,
) -> list[str]:
    """The modalities some row lacks (a placeholder stands in for each), for a model that reads images and/or text
    and has placeholders for missing ones or not.

    Raises:
        ValueError: a modality the model cannot do without is missing, a text is empty, or a row has neither.
    """
    missing = []
    if reads_image and not all(has_image):
        if not placeholders:
            raise ValueError("this model needs an image (--image PATH)")
        missing.append("image")
    if reads_text:
        if not all(has_text):
            if not placeholders:
                raise ValueError("this model needs a non-empty text (--text '...')")
            missing.append("text")
        if any(not str(t).strip() for t in texts or [] if t is not None):
            raise ValueError("empty text: give a non-empty text (--text '...'), or leave the text out")
    if placeholders and not all(i or t for i, t in zip(has_image, has_text, strict=True)):
        raise ValueError("every input needs an image, a text or both")
    return missing
