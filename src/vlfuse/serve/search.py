"""`POST /v1/search` (a text query → the top-k items of a retrieval index) and `GET /v1/search/image/{position}`
(the image of one indexed item, as a PNG thumbnail), from `vlfuse serve --index INDEX_FILE`.

Images are served by their position in the index, never by a path taken from the request: the server only opens
sources recorded in the index, so a client cannot make it read any other file. Built-in sources such as
"easy-vqa:test/12" are not files at all; both kinds are rendered by `vlfuse.retrieval.sources.thumbnail` (as the
contact sheets of `vlfuse search` are) and sent as PNGs of at most THUMBNAIL pixels a side. Each hit of an image
index carries its `image_url`, so the page (or any client) fetches only the images it shows.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time, and they refer to
# the limits of the app being built (local variables).

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi import Path as PathParam
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vlfuse.errors import CheckpointError, DataError
from vlfuse.retrieval.index import EmbeddingIndex
from vlfuse.retrieval.run import RetrievalRun
from vlfuse.retrieval.sources import thumbnail
from vlfuse.serve.backends import package_versions
from vlfuse.serve.batcher import MicroBatcher
from vlfuse.serve.capabilities import ServeContext, register_capability
from vlfuse.serve.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from vlfuse.serve.limits import require_text
from vlfuse.task import load_run_for

MAX_K = 100  # most hits one request may ask for
THUMBNAIL = 256  # largest side of a served image, in pixels (smaller images are sent at their own size)


@dataclass
class SearchIndex:
    """An index file with the retrieval run that embeds queries for it (checked to be the run that built it)."""

    index: EmbeddingIndex
    run: RetrievalRun
    path: Path

    @classmethod
    def load(cls, index_path: str | Path, run: RetrievalRun | str | Path | None = None) -> "SearchIndex":
        """Load an index and its run (default: the run directory recorded in the index), as `vlfuse search` does.

        Raises:
            DataError: the index file is missing, not an index, or empty.
            CheckpointError: the run cannot be loaded, or the index was built by another model.
        """
        index_path = Path(index_path)
        index = EmbeddingIndex.load(index_path)
        if len(index) == 0:
            raise DataError(f"index '{index_path}' is empty; add items with `vlfuse index RUN SOURCE --append`")
        if run is None:
            if not index.run or not (Path(index.run) / "config.yaml").is_file():
                raise CheckpointError(
                    f"index '{index_path}' was built by run '{index.run}', which is not a run directory here; "
                    "pass the retrieval run that built it with --retrieval-run DIR"
                )
            run = index.run
        run = run if isinstance(run, RetrievalRun) else load_run_for(run, "search")
        index.check_model(run.fingerprint, run.path, index_path)
        return cls(index, run, index_path)


class SearchHitOut(BaseModel):
    rank: int = Field(ge=1, description="1 for the best match")
    score: float = Field(description="cosine similarity between the query and the item")
    source: str = Field(description="where the item came from: a file path, 'easy-vqa:test/12', 'file.txt:3'")
    label: str | None = Field(description="the item's label or text, when the index has one")
    image_url: str | None = Field(description="GET this for the item's image (None in an index of texts)")


class SearchResponse(BaseModel):
    query: str
    index_kind: str = Field(description="what the index holds: image or text")
    hits: list[SearchHitOut] = Field(description="the top-k items, best first")
    seconds: float = Field(ge=0.0, description="time to embed the query and search, batching wait included")


def has_index(ctx: ServeContext) -> bool:
    return ctx.options.get("index") is not None


def describe_retrieval(served: SearchIndex) -> dict[str, Any]:
    """/v1/info's main facts for a server whose main model is the retrieval run (no classifier, no bridge)."""
    metrics_file = served.run.path / "test_metrics.json"
    return {
        "run": served.run.path.name,
        "task": "retrieval",
        "labels": [],
        "backend": "torch",
        "inputs": {"image": False, "text": True, "either_may_be_missing": False, "image_size": None},
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        "versions": package_versions("vlfuse", "torch", "fastapi", "uvicorn"),
        "extra": {},
    }


def render_thumbnail(served: SearchIndex, position: int) -> bytes:
    """The PNG of one indexed item's image, at most THUMBNAIL pixels a side."""
    source = served.index.sources[position]
    try:
        image = thumbnail(source, root=served.run.cfg.data.root)
    except (OSError, ValueError, KeyError, IndexError, DataError) as err:
        raise ApiError(
            404, "image_unavailable", f"the image of item {position} ('{source}') cannot be read now: {err}",
            field="position",
        ) from None  # fmt: skip
    image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@register_capability("search", available=has_index)
def search_routes(ctx: ServeContext) -> APIRouter:
    """Text → image (or text) search in the served index."""
    served: SearchIndex = ctx.options["index"]
    index, run, limits = served.index, served.run, ctx.limits
    max_k = min(MAX_K, len(index))

    def run_batch(items: list[tuple[str, int]]) -> list[list[SearchHitOut]]:
        queries = run.embed_texts([query for query, _ in items])  # (Q, E) unit vectors
        scores, positions = index.search(queries, max(k for _, k in items))  # (Q, k_max) each, best first
        results = []
        for (_, k), row_scores, row_positions in zip(items, scores.tolist(), positions.tolist(), strict=True):
            hits = [(s, p) for s, p in zip(row_scores, row_positions, strict=True) if p >= 0][:k]  # FAISS pads -1
            results.append([
                SearchHitOut(rank=r + 1, score=s, source=index.sources[p], label=index.labels[p],
                             image_url=f"/v1/search/image/{p}" if index.kind == "image" else None)
                for r, (s, p) in enumerate(hits)
            ])  # fmt: skip
        return results

    batcher = MicroBatcher(run_batch, **limits.batching())
    ctx.batchers["search"] = batcher
    ctx.info["search"] = {
        "index": served.path.name, "kind": index.kind, "items": len(index), "backend": index.active_backend,
        "run": run.path.name, "max_k": max_k,
    }  # fmt: skip
    router = APIRouter(tags=["search"])

    @router.post(
        "/v1/search",
        response_model=SearchResponse,
        responses=ERROR_RESPONSES,
        form_limits=limits.form_limits(files=0),
        summary=f"The top-k {index.kind}s of the index for a text query",
    )
    async def search(
        query: Annotated[str, Form(max_length=limits.max_text_chars, description="what to look for, in words")],
        k: Annotated[int, Form(ge=1, le=max_k, description="how many hits to return")] = min(5, max_k),
    ) -> SearchResponse:
        with batcher.reserve() as ticket:
            query = require_text(query, "query", limits.max_text_chars)
            started = time.perf_counter()
            hits = await batcher.submit((query, k), ticket)
        return SearchResponse(query=query, index_kind=index.kind, hits=hits,
                              seconds=round(time.perf_counter() - started, 4))  # fmt: skip

    @router.get(
        "/v1/search/image/{position}",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the item's image (PNG)"},
            404: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
        summary="The image of one indexed item (PNG thumbnail), by its position in the index",
    )
    async def search_image(
        position: Annotated[int, PathParam(ge=0, description="the item's row in the index (from a hit's image_url)")],
    ) -> Response:
        if index.kind != "image":
            raise ApiError(404, "not_found", "the served index holds texts, not images", field="position")
        if position >= len(index):
            raise ApiError(
                404, "not_found", f"no item {position} in the index; it holds {len(index):,} items "
                f"(positions 0 to {len(index) - 1:,})", field="position",
            )  # fmt: skip
        png = await run_in_threadpool(render_thumbnail, served, position)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    return router
