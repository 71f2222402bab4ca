"""Name → component registries, so configs and the CLI can pick encoders, fusions and heads by string.

A built-in component is one module of its kind's package, named as it is registered (`vlfuse/fusion/concat.py`
registers "concat"): the registry lists a package's modules without importing them and imports one when its name is
first looked up, so `vlfuse list` and config validation never load torch for components they do not build. A
component registers itself with its own pydantic config class:

    @FUSIONS.register("concat", ConcatConfig)
    class ConcatFusion(nn.Module):
        def __init__(self, cfg: ConcatConfig, *, image_dim: int, text_dim: int, ...): ...

`build(spec, **derived)` constructs it from a validated config plus the sizes derived from the data and the
upstream modules (never written in YAML).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vlfuse.errors import ConfigError


class ComponentConfig(BaseModel):
    """Base of every registered component's config: a `name` plus the component's own fields."""

    model_config = ConfigDict(extra="forbid")
    name: str


class Registry:
    """A named set of components of one kind (image encoders, text encoders, fusions, heads).

    Args:
        kind: what the components are, for messages ("fusion").
        package: the package whose modules are this kind's built-in components, one each, by module name.
    """

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, tuple[type, type[ComponentConfig]]] = {}
        self._modules: list[str] | None = None

    def register(self, name: str, config_cls: type[ComponentConfig]) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            module = cls.__module__
            if module.startswith(self.package + ".") and module != f"{self.package}.{name}":
                raise ValueError(f"{self.kind} '{name}' is registered in {module}; a built-in {self.kind} lives in "
                                 f"{self.package}.{name}")  # fmt: skip
            self._entries[name] = (cls, config_cls)
            cls.registry_name = name
            return cls

        return decorator

    def builtin_names(self) -> list[str]:
        """The modules of the package (not imported)."""
        if self._modules is None:
            paths = importlib.import_module(self.package).__path__
            self._modules = sorted(m.name for m in pkgutil.iter_modules(paths) if not m.name.startswith("_"))
        return self._modules

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self.builtin_names()))

    def component_class(self, name: str) -> type:
        return self._lookup(name)[0]

    def config_class(self, name: str) -> type[ComponentConfig]:
        return self._lookup(name)[1]

    def _lookup(self, name: str) -> tuple[type, type[ComponentConfig]]:
        if name not in self._entries and name in self.builtin_names():
            importlib.import_module(f"{self.package}.{name}")  # registers it
            if name not in self._entries:
                raise ValueError(f"{self.package}.{name} does not register the {self.kind} '{name}'")
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
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


IMAGE_ENCODERS = Registry("image encoder", "vlfuse.encoders.image")
TEXT_ENCODERS = Registry("text encoder", "vlfuse.encoders.text")
FUSIONS = Registry("fusion", "vlfuse.fusion")
HEADS = Registry("head", "vlfuse.heads")
TEMPORAL_MODULES = Registry("temporal module", "vlfuse.encoders.temporal")  # over per-frame features of a video
