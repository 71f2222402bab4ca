"""What a server can do, as pluggable route providers.

A capability is a name, a test of whether the server has what it needs, and a function that builds its routes.
`create_app` mounts every registered capability whose test passes and lists the mounted ones in /v1/info, where the
web page reads them. Built in: `predict` (a classification run), `ask` and `caption` (a language bridge,
`options["bridge"]`) and `search` (a retrieval index, `options["index"]`). A capability registers itself from its
own module, e.g.

    @register_capability("caption", available=lambda ctx: ctx.options.get("bridge") is not None)
    def caption_routes(ctx: ServeContext) -> APIRouter: ...

and `vlfuse.serve.app.CAPABILITY_MODULES` names the modules to import so that they register.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

if TYPE_CHECKING:
    from vlfuse.serve.backends import Predictor
    from vlfuse.serve.batcher import MicroBatcher
    from vlfuse.serve.limits import ServeLimits


@dataclass
class ServeContext:
    """Everything a capability may use to build its routes.

    Attributes:
        predictor: the classification run's backend; None when the server has none (a bridge or an index alone).
        limits: the server's request limits.
        run_dir: the main served folder (the classification run or its export folder; else the bridge run, else
            the retrieval run).
        options: the loaded extras given to `create_app`, by name: "bridge" (a `BridgeRun`) and "index" (a
            `vlfuse.serve.search.SearchIndex`).
        batchers: micro-batchers whose loops the app starts and stops with the server (a capability adds its own).
        info: sections a capability adds to /v1/info, by name (e.g. "bridge", "search").
    """

    predictor: Predictor | None
    limits: ServeLimits
    run_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Capability:
    name: str
    available: Callable[[ServeContext], bool]
    routes: Callable[[ServeContext], APIRouter]


CAPABILITIES: dict[str, Capability] = {}


def register_capability(
    name: str, *, available: Callable[[ServeContext], bool]
) -> Callable[[Callable[[ServeContext], APIRouter]], Callable[[ServeContext], APIRouter]]:
    """Decorator: register a route builder under `name`, mounted when `available(ctx)` is true."""

    def decorate(routes: Callable[[ServeContext], APIRouter]) -> Callable[[ServeContext], APIRouter]:
        if name in CAPABILITIES:
            raise ValueError(f"capability '{name}' is already registered")
        CAPABILITIES[name] = Capability(name, available, routes)
        return routes

    return decorate
