"""`POST /v1/predict`: an image (a clip, for a video run) and/or a text (multipart) → the top-k labels with
probabilities, micro-batched."""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time, and they refer to
# the limits of the app being built (local variables).

from dataclasses import dataclass
from typing import Annotated

import torch
from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from vlfuse.serve.batcher import MicroBatcher
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.errors import ERROR_RESPONSES, FORM_TYPES, ApiError
from vlfuse.serve.limits import decode_upload, require_text
from vlfuse.serve.video import ClipReader, reads_video


class LabelProbability(BaseModel):
    label: str
    probability: float = Field(ge=0.0, le=1.0)


class UsedInputs(BaseModel):
    image: bool = Field(description="an image was given and read")
    text: bool = Field(description="a text was given and read")


class UsedVideoInputs(BaseModel):
    video: bool = Field(description="a clip was given and read")
    text: bool = Field(description="a text was given and read")


class PredictResponse(BaseModel):
    predictions: list[LabelProbability] = Field(description="top-k labels, most probable first")
    used: UsedInputs
    backend: str = Field(description="torch, onnx or onnx-int8")


class VideoPredictResponse(BaseModel):
    predictions: list[LabelProbability] = Field(description="top-k labels, most probable first")
    used: UsedVideoInputs
    backend: str = Field(description="torch (video runs have no ONNX export)")


@dataclass
class PredictItem:
    image: torch.Tensor | None  # (C, H, W) uint8 at the model's size; a video run's clip: (F, C, S, S) uint8
    text: str | None


def check_text(text: str | None, ctx: ServeContext) -> str | None:
    if text is None or not ctx.predictor.reads_text:
        return None
    return require_text(text, "text", ctx.limits.max_text_chars)


def check_presence(has_upload: bool, has_text: bool, ctx: ServeContext, upload: str = "image") -> None:
    """Refuse a request without the inputs the model needs; `upload` names the file field (image, or video)."""
    p = ctx.predictor
    if not has_upload and not has_text:
        wanted = " and/or ".join(
            [*([f"an '{upload}' file"] if p.reads_image else []), *(["a 'text' field"] if p.reads_text else [])]
        )
        raise ApiError(422, "missing_input", f"no input: send {wanted} as multipart/form-data")
    for name, reads, has in ((upload, p.reads_image, has_upload), ("text", p.reads_text, has_text)):
        if reads and not has and not p.missing_modalities:
            raise ApiError(
                422,
                "missing_field",
                f"field '{name}' is required: this model cannot do without its {name}",
                field=name,
            )


async def explain_empty_form(request: Request, upload: str = "image") -> None:
    """Neither field arrived: tell a wrong content type or an unparseable body apart from an empty request."""
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.startswith(FORM_TYPES):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body is {content_type.split(';')[0]}; expected "
            f"multipart/form-data with an '{upload}' file and/or a 'text' field",
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
            f"expected an '{upload}' file and/or a 'text' field",
        )


def image_field(limits, note: str):
    """The optional `image` upload of a form route, described with the server's limits (an annotation)."""
    accepted = ", ".join(limits.formats)
    description = f"{accepted}; at most {limits.max_upload_bytes:,} bytes and {limits.max_pixels:,} pixels; {note}"
    return Annotated[UploadFile | None, File(description=description)]


def video_field(clips: ClipReader, note: str):
    """The optional `video` upload of a video run's route, described with the run's and the server's limits (an
    annotation)."""
    return Annotated[UploadFile | None, File(description=f"{clips.note()}; {note}")]


def text_field(limits, description: str):
    """The optional `text` field of a form route, limited to the server's text length (an annotation)."""
    return Annotated[str | None, Form(max_length=limits.max_text_chars, description=description)]


async def refuse_other_upload(request: Request, upload: str) -> None:
    """A 422 for the file field of the other kind of run: 'video' sent to an image run, 'image' to a video run (an
    empty one, as an HTML form's empty file input sends, is ignored)."""
    if not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return
    other = "image" if upload == "video" else "video"
    value = (await request.form()).get(other)  # FastAPI has parsed the form already: this is its cached copy
    if value is None or value == "" or (isinstance(value, StarletteUpload) and not value.filename and not value.size):
        return
    reads, expected = ("clips", " (MP4, WebM, AVI, MOV, MKV or GIF)") if upload == "video" else ("images", "")
    raise ApiError(
        422,
        f"{upload}_expected",
        f"field '{other}': this model reads {reads}, not {other}s; send the file as the '{upload}' field{expected}",
        field=other,
    )


async def read_inputs(
    request: Request, upload: UploadFile | None, text: str | None, ctx: ServeContext, clips: ClipReader | None = None
) -> tuple[torch.Tensor | None, str | None]:
    """A form's image (or, with `clips`, a video run's clip from the 'video' field) and/or text, checked (the one
    text rule, the modalities the model needs) and decoded off the event loop at the model's size: (pixels (C, H, W)
    or clip (F, C, S, S) uint8 or None, text or None). Raises ApiError (4xx) otherwise."""
    predictor, limits = ctx.predictor, ctx.limits
    field = "video" if clips is not None else "image"
    if upload is not None and not upload.filename and not upload.size:
        upload = None  # an HTML form's empty file input
    await refuse_other_upload(request, field)
    if upload is None and text is None:
        await explain_empty_form(request, field)
    text = check_text(text, ctx)
    has_upload = upload is not None and predictor.reads_image
    check_presence(has_upload, text is not None, ctx, field)
    if not has_upload:
        return None, text
    data = await upload.read()
    if clips is not None:
        return await run_in_threadpool(clips.decode, data, upload.filename), text  # (F, C, S, S) uint8
    pixels = await run_in_threadpool(
        decode_upload, data, upload.filename, limits, size=predictor.image_size, channels=predictor.channels
    )  # (C, H, W) uint8
    return pixels, text


def top_predictions(probs: torch.Tensor, top_k: int, label_names: list[str]) -> list[LabelProbability]:
    """The `top_k` most probable labels of one row of probabilities (K,), most probable first."""
    order = probs.argsort(descending=True)[:top_k].tolist()
    return [LabelProbability(label=label_names[i], probability=min(1.0, float(probs[i]))) for i in order]


@register_capability("predict", available=lambda ctx: ctx.predictor is not None)
def predict_routes(ctx: ServeContext) -> APIRouter:
    """The classifier endpoint of every run: an 'image' field, or for a video run a 'video' field (the clip)."""
    predictor, limits = ctx.predictor, ctx.limits
    num_labels = len(predictor.label_names)
    clips = ClipReader.of(predictor, limits) if reads_video(predictor) else None
    if clips is not None:
        ctx.info["video"] = clips.describe()

    def run_batch(items: list[PredictItem]) -> list[torch.Tensor]:
        probs = predictor.predict_proba([i.image for i in items], [i.text for i in items])  # (B, K)
        return list(probs)  # B tensors (K,)

    batcher = MicroBatcher(run_batch, **limits.batching())
    ctx.batchers["predict"] = batcher
    router = APIRouter(tags=["predict"])
    route = {"responses": ERROR_RESPONSES, "form_limits": limits.form_limits(files=2)}
    text_note = "the text or question; may be omitted when the model reads {} too"
    top_k_field = Annotated[int, Form(ge=1, le=num_labels, description="how many labels to return")]
    default_k = min(5, num_labels)

    async def answer(request: Request, upload, text, top_k: int) -> tuple[list[LabelProbability], bool, bool]:
        """(top-k predictions, an upload was read, a text was read) for one request, micro-batched."""
        with batcher.reserve() as ticket:
            pixels, text = await read_inputs(request, upload, text, ctx, clips)  # (C, H, W) or clip (F, C, S, S)
            probs = await batcher.submit(PredictItem(pixels, text), ticket)  # (K,)
        return top_predictions(probs, top_k, predictor.label_names), pixels is not None, text is not None

    if clips is not None:

        @router.post("/v1/predict", response_model=VideoPredictResponse, summary="Top-k labels for a clip and/or a "
                     "text (a video run)", **route)  # fmt: skip
        async def predict_video(
            request: Request,
            video: video_field(clips, "may be omitted when the model reads text too") = None,
            text: text_field(limits, text_note.format("clips")) = None,
            top_k: top_k_field = default_k,
        ) -> VideoPredictResponse:
            predictions, has_video, has_text = await answer(request, video, text, top_k)
            return VideoPredictResponse(predictions=predictions, used=UsedVideoInputs(video=has_video, text=has_text),
                                        backend=predictor.backend)  # fmt: skip

        return router

    @router.post("/v1/predict", response_model=PredictResponse, summary="Top-k labels for an image and/or a text",
                 **route)  # fmt: skip
    async def predict(
        request: Request,
        image: image_field(limits, "may be omitted when the model reads text too") = None,
        text: text_field(limits, text_note.format("images")) = None,
        top_k: top_k_field = default_k,
    ) -> PredictResponse:
        predictions, has_image, has_text = await answer(request, image, text, top_k)
        return PredictResponse(predictions=predictions, used=UsedInputs(image=has_image, text=has_text),
                               backend=predictor.backend)

    return router
