"""`POST /v1/ask` (an image and a question → an answer in words) and `POST /v1/caption` (an image → a caption), from
a language bridge (`vlfuse.bridge.run.BridgeRun`; `vlfuse serve --bridge RUN_OR_NAME`).

Generation takes ~0.3–1 s, so it runs in the micro-batcher's worker thread, never on the event loop, and concurrent
requests of both kinds share one `BridgeRun.generate` call: a caption is generation with the run's caption prompt,
and `generate` left-pads prompts of different lengths so each row's answer is what it would be alone.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time, and they refer to
# the limits of the app being built (local variables).

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field

from vlfuse.ood import far_warning
from vlfuse.serve.backends import package_versions
from vlfuse.serve.batcher import MicroBatcher
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.errors import ERROR_RESPONSES, ApiError
from vlfuse.serve.limits import read_upload, require_text


class OODResponse(BaseModel):
    score: float = Field(description="out-of-distribution score of the image (larger: less like the training images)")
    threshold: float = Field(description="scores above this are out of distribution")
    far: bool = Field(description="the image is out of distribution: the output may be meaningless")


class AskResponse(BaseModel):
    answer: str = Field(description="the generated answer")
    seconds: float = Field(ge=0.0, description="time from the decoded upload to the answer, batching wait included")
    ood: OODResponse | None = Field(None, description="how far the image is from the training images (null: the "
                                    "run has no detector)")  # fmt: skip
    warning: str | None = Field(None, description="set when the image is out of distribution")


class CaptionResponse(BaseModel):
    caption: str = Field(description="the generated caption")
    seconds: float = Field(ge=0.0, description="time from the decoded upload to the caption, batching wait included")
    ood: OODResponse | None = Field(None, description="how far the image is from the training images")
    warning: str | None = Field(None, description="set when the image is out of distribution")


StrictField = Annotated[bool, Form(description="refuse (422 out_of_distribution) instead of answering when the image "
                                   "is out of distribution")]  # fmt: skip


@dataclass
class GenerateItem:
    image: torch.Tensor  # (C, H, W) uint8 at the bridge's size
    prompt: str


def has_bridge(ctx: ServeContext) -> bool:
    return ctx.options.get("bridge") is not None


def describe_bridge(bridge) -> dict[str, Any]:
    """/v1/info's main facts for a server whose main model is the bridge (no classification run)."""
    metrics_file = bridge.path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()).get("test", {}) if metrics_file.is_file() else {}
    data = bridge.cfg.data
    return {
        "run": bridge.path.name,
        "task": "bridge",
        "labels": [],
        "backend": "torch",
        "inputs": {"image": True, "text": True, "either_may_be_missing": False, "image_size": data.image_size},
        "metrics": metrics,
        "versions": package_versions("vlfuse", "torch", "transformers", "fastapi", "uvicorn"),
        "extra": {},
    }


def bridge_batcher(ctx: ServeContext) -> MicroBatcher:
    """The one batcher behind both endpoints (created by whichever is built first), and the "bridge" info section."""
    if "bridge" in ctx.batchers:
        return ctx.batchers["bridge"]
    bridge, limits = ctx.options["bridge"], ctx.limits

    def run_batch(items: list[GenerateItem]) -> list[str]:
        images = torch.stack([item.image for item in items])  # (B, C, H, W) uint8
        return bridge.generate(images, [item.prompt for item in items])  # B texts

    batcher = MicroBatcher(run_batch, **limits.batching())
    ctx.batchers["bridge"] = batcher
    cfg = bridge.cfg
    ctx.info["bridge"] = {
        "run": bridge.path.name,
        "language_model": cfg.model.language_model,
        "image_encoder": cfg.model.image_encoder.name,
        "image_size": cfg.data.image_size,
        "channels": cfg.data.channels,
        "caption_prompt": cfg.caption_prompt,
        "generation": cfg.generation.model_dump(mode="json"),
    }
    return batcher


def _image_field(ctx: ServeContext) -> Any:
    limits = ctx.limits
    return File(
        description=f"{', '.join(limits.formats)}; at most {limits.max_upload_bytes:,} bytes and "
        f"{limits.max_pixels:,} pixels"
    )


async def _generate(ctx: ServeContext, batcher: MicroBatcher, ticket, image: UploadFile, prompt: str, strict: bool):
    """Decode the upload, score how far it is from the training images (refusing it when `strict` and far), queue
    (image, prompt) for generation; returns (text, seconds, OOD verdict or None, warning or None)."""
    bridge = ctx.options["bridge"]
    data = bridge.cfg.data
    pixels = await read_upload(image, ctx.limits, size=data.image_size, channels=data.channels)  # (C, H, W)
    started = time.perf_counter()
    verdicts = await asyncio.to_thread(bridge.ood_verdicts, pixels[None]) if hasattr(bridge, "ood_verdicts") else None
    verdict = verdicts[0] if verdicts else None
    warning = far_warning("the image", verdict, bridge.path.name) if verdict is not None and verdict.far else None
    if warning and strict:
        raise ApiError(422, "out_of_distribution", f"refused (strict): {warning}", field="image")
    text = await batcher.submit(GenerateItem(pixels, prompt), ticket)
    ood = OODResponse(**verdict.to_dict()) if verdict is not None else None
    return text, round(time.perf_counter() - started, 4), ood, warning


@register_capability("ask", available=has_bridge)
def ask_routes(ctx: ServeContext) -> APIRouter:
    """Free-form answers to questions about an image."""
    batcher, limits = bridge_batcher(ctx), ctx.limits
    router = APIRouter(tags=["bridge"])

    @router.post(
        "/v1/ask",
        response_model=AskResponse,
        responses=ERROR_RESPONSES,
        form_limits=limits.form_limits(files=2),
        summary="Answer a question about an image, in words (language bridge)",
    )
    async def ask(
        image: Annotated[UploadFile, _image_field(ctx)],
        question: Annotated[
            str, Form(max_length=limits.max_text_chars, description="the question about the image, in words")
        ],
        strict: StrictField = False,
    ) -> AskResponse:
        with batcher.reserve() as ticket:
            question = require_text(question, "question", limits.max_text_chars)
            answer, seconds, ood, warning = await _generate(ctx, batcher, ticket, image, question, strict)
        return AskResponse(answer=answer, seconds=seconds, ood=ood, warning=warning)

    return router


@register_capability("caption", available=has_bridge)
def caption_routes(ctx: ServeContext) -> APIRouter:
    """A caption for an image (generation with the run's caption prompt)."""
    batcher = bridge_batcher(ctx)
    prompt = ctx.options["bridge"].cfg.caption_prompt
    router = APIRouter(tags=["bridge"])

    @router.post(
        "/v1/caption",
        response_model=CaptionResponse,
        responses=ERROR_RESPONSES,
        form_limits=ctx.limits.form_limits(files=2, texts=False),  # `strict` is a short field
        summary="Describe an image in words (language bridge)",
    )
    async def caption(image: Annotated[UploadFile, _image_field(ctx)], strict: StrictField = False) -> CaptionResponse:
        with batcher.reserve() as ticket:
            text, seconds, ood, warning = await _generate(ctx, batcher, ticket, image, prompt, strict)
        return CaptionResponse(caption=text, seconds=seconds, ood=ood, warning=warning)

    return router
