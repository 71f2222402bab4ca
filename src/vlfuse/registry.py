"""Name → component registries, so configs and the CLI can pick encoders, fusions and heads by string.

A component registers itself with its own pydantic config class:

    @FUSIONS.register("concat", ConcatConfig)
    class ConcatFusion(nn.Module):
        def __init__(self, cfg: ConcatConfig, *, image_dim: int, text_dim: int, ...): ...

`build(spec, **derived)` constructs it from a validated config plus the sizes derived from the data and the
upstream modules (never written in YAML).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vlfuse.errors import ConfigError


class ComponentConfig(BaseModel):
    """Base of every registered component's config: a `name` plus the component's own fields."""

    model_config = ConfigDict(extra="forbid")
    name: str


class Registry:
    """A named set of components of one kind (image encoders, text encoders, fusions, heads)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[type, type[ComponentConfig]]] = {}

    def register(self, name: str, config_cls: type[ComponentConfig]) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = (cls, config_cls)
            cls.registry_name = name
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def component_class(self, name: str) -> type:
        return self._lookup(name)[0]

    def config_class(self, name: str) -> type[ComponentConfig]:
        return self._lookup(name)[1]

    def _lookup(self, name: str) -> tuple[type, type[ComponentConfig]]:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown {self.kind} '{name}'; registered: {', '.join(self.names())}.{hint}")
        return self._entries[name]

    def parse(self, raw: Any, where: str) -> ComponentConfig:
        """Validate a raw dict (or a bare name) into the component's config; `where` is its config key."""
        if isinstance(raw, ComponentConfig):
            raw = raw.model_dump()
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or "name" not in raw:
            raise ConfigError(f"{where}: expected a mapping with a 'name' key (one of {', '.join(self.names())})")
        config_cls = self._lookup(raw["name"])[1]
        try:
            return config_cls.model_validate(raw)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, where, config_cls)) from None

    def build(self, cfg: ComponentConfig, **derived: Any) -> Any:
        cls, config_cls = self._lookup(cfg.name)
        if not isinstance(cfg, config_cls):
            cfg = self.parse(cfg.model_dump(), self.kind)
        return cls(cfg, **derived)


def format_validation_error(err: ValidationError, where: str, model_cls: type[BaseModel]) -> str:
    """Turn a pydantic error into one line per problem, naming the full dotted key and what was expected."""
    lines = []
    valid = ", ".join(model_cls.model_fields)
    for problem in err.errors():
        key = ".".join([where, *(str(p) for p in problem["loc"])]) if where else ".".join(map(str, problem["loc"]))
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'; valid keys here: {valid}")
        else:
            lines.append(f"'{key}': {problem['msg']} (got {problem.get('input')!r})")
    return "; ".join(lines)


IMAGE_ENCODERS = Registry("image encoder")
TEXT_ENCODERS = Registry("text encoder")
FUSIONS = Registry("fusion")
HEADS = Registry("head")
