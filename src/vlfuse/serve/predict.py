"""`POST /v1/predict`: an image and/or a text (multipart) → the top-k labels with probabilities, micro-batched."""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time, and they refer to
# the limits of the app being built (local variables).

from dataclasses import dataclass
from typing import Annotated

import torch
from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vlfuse.serve.batcher import MicroBatcher
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.errors import ERROR_RESPONSES, ApiError
from vlfuse.serve.limits import decode_upload, require_text


class LabelProbability(BaseModel):
    label: str
    probability: float = Field(ge=0.0, le=1.0)


class UsedInputs(BaseModel):
    image: bool = Field(description="an image was given and read")
    text: bool = Field(description="a text was given and read")


class PredictResponse(BaseModel):
    predictions: list[LabelProbability] = Field(description="top-k labels, most probable first")
    used: UsedInputs
    backend: str = Field(description="torch, onnx or onnx-int8")


@dataclass
class PredictItem:
    image: torch.Tensor | None  # (C, H, W) uint8 at the model's size
    text: str | None


def check_text(text: str | None, ctx: ServeContext) -> str | None:
    if text is None or not ctx.predictor.reads_text:
        return None
    return require_text(text, "text", ctx.limits.max_text_chars)


def check_presence(has_image: bool, has_text: bool, ctx: ServeContext) -> None:
    p = ctx.predictor
    if not has_image and not has_text:
        wanted = " and/or ".join(
            [*(["an 'image' file"] if p.reads_image else []), *(["a 'text' field"] if p.reads_text else [])]
        )
        raise ApiError(422, "missing_input", f"no input: send {wanted} as multipart/form-data")
    for name, reads, has in (("image", p.reads_image, has_image), ("text", p.reads_text, has_text)):
        if reads and not has and not p.missing_modalities:
            raise ApiError(
                422,
                "missing_field",
                f"field '{name}' is required: this model cannot do without its {name}",
                field=name,
            )


async def explain_empty_form(request: Request) -> None:
    """Neither field arrived: tell a wrong content type or an unparseable body apart from an empty request."""
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body is {content_type.split(';')[0]}; expected "
            "multipart/form-data with an 'image' file and/or a 'text' field",
        )
    size = request.headers.get("content-length", "")
    boundary = content_type.partition("boundary=")[2].strip('"')
    sent_body = (size.isdigit() and int(size) > 0) or "transfer-encoding" in request.headers
    empty_form = size.isdigit() and int(size) <= len(boundary) + 8  # just the closing delimiter: --BOUNDARY--\r\n
    if sent_body and not empty_form and not await request.form():
        raise ApiError(
            400,
            "malformed_body",
            "the multipart/form-data body holds no complete field (check the boundary and the closing delimiter); "
            "expected an 'image' file and/or a 'text' field",
        )


def image_field(limits, note: str):
    """The optional `image` upload of a form route, described with the server's limits (an annotation)."""
    accepted = ", ".join(limits.formats)
    description = f"{accepted}; at most {limits.max_upload_bytes:,} bytes and {limits.max_pixels:,} pixels; {note}"
    return Annotated[UploadFile | None, File(description=description)]


def text_field(limits, description: str):
    """The optional `text` field of a form route, limited to the server's text length (an annotation)."""
    return Annotated[str | None, Form(max_length=limits.max_text_chars, description=description)]


async def read_inputs(
    request: Request, image: UploadFile | None, text: str | None, ctx: ServeContext
) -> tuple[torch.Tensor | None, str | None]:
    """A form's image and/or text, checked (the one text rule, the modalities the model needs) and the image decoded
    at the model's size: (pixels (C, H, W) uint8 or None, text or None). Raises ApiError (4xx) otherwise."""
    predictor, limits = ctx.predictor, ctx.limits
    if image is not None and not image.filename and not image.size:
        image = None  # an HTML form's empty file input
    if image is None and text is None:
        await explain_empty_form(request)
    text = check_text(text, ctx)
    has_image = image is not None and predictor.reads_image
    check_presence(has_image, text is not None, ctx)
    if not has_image:
        return None, text
    data = await image.read()
    pixels = await run_in_threadpool(
        decode_upload, data, image.filename, limits, size=predictor.image_size, channels=predictor.channels
    )  # (C, H, W) uint8
    return pixels, text


@register_capability("predict", available=lambda ctx: ctx.predictor is not None)
def predict_routes(ctx: ServeContext) -> APIRouter:
    """The classifier endpoint of every run."""
    predictor, limits = ctx.predictor, ctx.limits
    num_labels = len(predictor.label_names)

    def run_batch(items: list[PredictItem]) -> list[torch.Tensor]:
        probs = predictor.predict_proba([i.image for i in items], [i.text for i in items])  # (B, K)
        return list(probs)  # B tensors (K,)

    batcher = MicroBatcher(run_batch, **limits.batching())
    ctx.batchers["predict"] = batcher
    router = APIRouter(tags=["predict"])

    @router.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        form_limits=limits.form_limits(files=2),
        summary="Top-k labels for an image and/or a text",
    )
    async def predict(
        request: Request,
        image: image_field(limits, "may be omitted when the model reads text too") = None,
        text: text_field(limits, "the text or question; may be omitted when the model reads images too") = None,
        top_k: Annotated[int, Form(ge=1, le=num_labels, description="how many labels to return")] = min(5, num_labels),
    ) -> PredictResponse:
        with batcher.reserve() as ticket:
            pixels, text = await read_inputs(request, image, text, ctx)
            probs = await batcher.submit(PredictItem(pixels, text), ticket)  # (K,)
        order = probs.argsort(descending=True)[:top_k].tolist()
        return PredictResponse(
            predictions=[
                LabelProbability(label=predictor.label_names[i], probability=min(1.0, float(probs[i]))) for i in order
            ],
            used=UsedInputs(image=pixels is not None, text=text is not None),
            backend=predictor.backend,
        )

    return router
