"""`POST /v1/moderate`: an image and/or a text (multipart) → per-label calibrated probabilities, the policy's
decision (allow / review / block) and the modality that drove each score, micro-batched. Mounted for moderate runs
served with PyTorch; /v1/info gets a "moderate" section with the policy's fitted rules."""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field

from vlfuse.serve.batcher import MicroBatcher
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.errors import ERROR_RESPONSES
from vlfuse.serve.predict import PredictItem, UsedInputs, image_field, read_inputs, text_field


class LabelVerdictOut(BaseModel):
    probability: float = Field(ge=0.0, le=1.0, description="calibrated probability")
    decision: Literal["allow", "review", "block"]
    driver: Literal["image", "text", "both"] | None = Field(
        description="the modality whose removal moves the score most (both: neither dominates); null when only one "
        "was given or attribution was not asked for"
    )


class ModerateResponse(BaseModel):
    decision: Literal["allow", "review", "block"] = Field(description="the most severe over the labels")
    labels: dict[str, LabelVerdictOut]
    reasons: list[str] = Field(description="labels whose decision is not allow")
    used: UsedInputs


def _moderate_run(ctx: ServeContext):
    run = getattr(ctx.predictor, "run", None)
    return run if getattr(run, "task", None) == "moderate" else None


def describe_policy(run) -> dict:
    keep = ("action", "target", "threshold", "low", "high", "review_precision")
    return {"labels": run.scores, "calibration": run.calibrator.method, "attribution": run.can_attribute,
            "rules": {name: {k: rule[k] for k in keep} for name, rule in run.rules.items()}}  # fmt: skip


@register_capability("moderate", available=lambda ctx: _moderate_run(ctx) is not None)
def moderate_routes(ctx: ServeContext) -> APIRouter:
    run, limits = _moderate_run(ctx), ctx.limits
    ctx.info["moderate"] = describe_policy(run)

    def run_batch(items: list[tuple[PredictItem, bool]]) -> list:
        verdicts = run.moderate([i.image for i, _ in items], [i.text for i, _ in items], attribute=True)
        for verdict, (_, attribute) in zip(verdicts, items, strict=True):
            if not attribute:
                for label in verdict.labels.values():
                    label.driver = None
        return verdicts

    batcher = MicroBatcher(run_batch, **limits.batching())
    ctx.batchers["moderate"] = batcher
    router = APIRouter(tags=["moderate"])

    @router.post(
        "/v1/moderate",
        response_model=ModerateResponse,
        responses=ERROR_RESPONSES,
        form_limits=limits.form_limits(files=2),
        summary="Calibrated label scores and the policy's decision for an image and/or a text",
    )
    async def moderate(
        request: Request,
        image: image_field(limits, "may be omitted when the model reads text too") = None,
        text: text_field(limits, "the post's text; may be omitted when the model reads images too") = None,
        attribute: Annotated[bool, Form(description="name the modality behind each score (3 passes)")] = True,
    ) -> ModerateResponse:
        with batcher.reserve() as ticket:
            pixels, text = await read_inputs(request, image, text, ctx)
            verdict = await batcher.submit((PredictItem(pixels, text), attribute), ticket)
        out = verdict.as_dict()
        return ModerateResponse(**out, used=UsedInputs(image=pixels is not None, text=text is not None))

    return router
