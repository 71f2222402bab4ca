"""`POST /v1/explain`: an image and a text (multipart) → the exact image-vs-text Shapley split, a pixel map (Grad-CAM,
Integrated Gradients or occlusion) as a PNG overlay with its deletion check, and the words' attributions. Mounted
for classify and moderate runs; it runs on the PyTorch run (gradients), loaded on the first request when the server
predicts on an ONNX export of it."""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.

import base64
import io
import threading
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vlfuse.errors import VLFuseError
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.errors import ERROR_RESPONSES, ApiError
from vlfuse.serve.predict import image_field, read_inputs, text_field


class ModalityOut(BaseModel):
    image_share: float = Field(ge=0.0, le=1.0, description="|φ_image| / (|φ_image| + |φ_text|)")
    text_share: float = Field(ge=0.0, le=1.0)
    image: float = Field(description="φ_image: the image's exact Shapley value (probability points)")
    text: float = Field(description="φ_text")


class DeletionOut(BaseModel):
    top_drop: float = Field(description="probability drop when the map's top 10 % of pixels are removed")
    random_drop: float = Field(description="the drop for a random 10 % of pixels")
    passed: bool


class PixelsOut(BaseModel):
    method: str
    overlay_png: str = Field(description="the input under the heatmap, as a data: URL (PNG)")
    deletion: DeletionOut


class WordsOut(BaseModel):
    tokens: list[str]
    ig: list[float] = Field(description="Integrated Gradients per token: + for the label, − against")


class ExplainResponse(BaseModel):
    label: str
    probability: float = Field(ge=0.0, le=1.0)
    modality: ModalityOut | None = Field(description="null when only one modality was given")
    pixels: PixelsOut | None = Field(description="null without an image")
    words: WordsOut | None = Field(description="null without a text")
    seconds: float


def _source_run_dir(ctx: ServeContext) -> Path | None:
    """The classify / moderate run behind the served predictor: its own run, or the run whose current export (made
    from its present weights) is served — so explanations are of the model that predicts."""
    from vlfuse.export.format import current_export

    p = ctx.predictor
    if p is None:
        return None
    run = getattr(p, "run", None)
    if run is not None:
        return run.path
    parent = Path(p.path).resolve().parent
    export = current_export(parent)
    return parent if export is not None and export.resolve() == Path(p.path).resolve() else None


def _explainable(ctx: ServeContext) -> bool:
    task = getattr(ctx.predictor, "task", "classify")  # an ONNX export is of a classify run
    return ctx.predictor is not None and task in ("classify", "moderate") and _source_run_dir(ctx) is not None


@register_capability("explain", available=_explainable)
def explain_routes(ctx: ServeContext) -> APIRouter:
    limits = ctx.limits
    lock = threading.Lock()  # one explanation at a time: each already uses the free cores
    loaded: dict[str, object] = {}

    def torch_run():
        if "run" not in loaded:
            served = getattr(ctx.predictor, "run", None)
            if served is None:
                from vlfuse.task import load_run

                served = load_run(_source_run_dir(ctx))
            loaded["run"] = served
        return loaded["run"]

    def explain(pixels, text: str | None, method: str) -> ExplainResponse:
        from vlfuse.explain.example import evidence_map, explain_example
        from vlfuse.explain.render import overlay_png

        with lock:
            explanation = explain_example(torch_run(), pixels, text, methods=(method,))
        r = explanation.result
        pixels_out = None
        if method in explanation.maps:
            buffer = io.BytesIO()
            heat = explanation.maps[method]
            overlay_png(explanation.example.raw_image, evidence_map(method, heat), buffer)
            d = r["pixels"][method]["deletion"]
            pixels_out = PixelsOut(
                method=method, overlay_png="data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
                deletion=DeletionOut(top_drop=d["top_drop"], random_drop=d["random_drop"], passed=d["passed"]),
            )  # fmt: skip
        mod = r.get("modality")
        shares = {k: mod[k] for k in ("image_share", "text_share", "image", "text")} if mod else None
        words = r.get("words")
        return ExplainResponse(
            label=r["label"], probability=min(1.0, r["probability"]),
            modality=ModalityOut(**shares) if shares else None,
            pixels=pixels_out, words=WordsOut(tokens=words["tokens"], ig=words["ig"]) if words else None,
            seconds=sum(r["seconds"].values()),
        )  # fmt: skip

    router = APIRouter(tags=["explain"])

    @router.post(
        "/v1/explain",
        response_model=ExplainResponse,
        responses=ERROR_RESPONSES,
        form_limits=limits.form_limits(files=2),
        summary="Which modality, pixels and words drove the prediction, with the deletion check",
    )
    async def explain_route(
        request: Request,
        image: image_field(limits, "the image to explain") = None,
        text: text_field(limits, "the text or question") = None,
        method: Annotated[Literal["gradcam", "ig", "occlusion"], Form(description="the pixel map")] = "gradcam",
    ) -> ExplainResponse:
        pixels, text = await read_inputs(request, image, text, ctx)
        try:
            return await run_in_threadpool(explain, pixels, text, method)
        except (ValueError, VLFuseError) as err:  # e.g. Grad-CAM on a tower without a spatial map
            raise ApiError(422, "cannot_explain", str(err), field="method") from None

    return router
