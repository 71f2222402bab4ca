"""What a served run can do, as pluggable route providers.

A capability is a name, a test of whether the run has what it needs, and a function that builds its routes.
`create_app` mounts every registered capability whose test passes and lists the mounted ones in /v1/info, where the
web page reads them. `predict` (classification / VQA answers) is built in. Capabilities that other parts of vlfuse
provide register themselves the same way from their own module, e.g.

    @register_capability("caption", available=lambda ctx: (ctx.run_dir / "bridge").is_dir())
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
        predictor: the run's classifier backend.
        limits: the server's request limits.
        run_dir: the served folder (a run directory, or an export folder with the ONNX backends).
        options: extra settings given to `create_app` (e.g. a retrieval index path), keyed by name.
        batchers: micro-batchers whose loops the app starts and stops with the server (a capability adds its own).
    """

    predictor: Predictor
    limits: ServeLimits
    run_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)


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
