"""Tasks — what a run does (classify, retrieval, bridge, …) — as entries of one registry.

A task is one package (`vlfuse/classify/`, `vlfuse/retrieval/`, `vlfuse/bridge/`) whose `__init__.py` registers a
`TaskInfo` naming three parts as "module:attribute", each imported only when first used:

- `config`: its config class (shared sections `data`, `model`, `train` plus the task's own);
- `run`: the finished run as an inference object, `RunClass.load(path, cfg, device=...)` (predict, evaluate, ask,
  search, …) — it never imports the training side;
- `training`: its `vlfuse.train.runner.TrainingTask`, which the generic runner drives.

A config names its task once, in its top-level `task` key ("classify" when absent), and a run directory keeps it in
its config.yaml. `validate_config`, `load_config`, `resolve_run` and `load_run` dispatch on it; nothing else guesses.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from vlfuse.config import apply_overrides, read_yaml, validate_section
from vlfuse.errors import CheckpointError, ConfigError, TaskError

DEFAULT_TASK = "classify"


def resolve_reference(reference: str) -> Any:
    """"package.module:attribute" → the attribute (importing the module)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TaskInfo:
    """One registered task.

    Attributes:
        name: the `task` key of its configs ("classify").
        summary: one line for `vlfuse list`.
        config: "module:Class" of its config.
        run: "module:Class" of its loaded run (`load(path, cfg, *, device)`).
        training: "module:Class" of its `TrainingTask`.
        operations: what a loaded run supports, by command name (evaluate, predict, export, serve, ask, …).
        required_files: files every finished run directory of the task holds (besides config.yaml).
        serve_as: how `vlfuse serve RUN` mounts such a run: "predict", "bridge" or "retrieval_run".
        shipped: runs shipped inside the package, name → folder relative to `vlfuse/`.
    """

    name: str
    summary: str
    config: str
    run: str
    training: str
    operations: tuple[str, ...]
    required_files: tuple[str, ...]
    serve_as: str
    shipped: dict[str, str] = field(default_factory=dict)

    @property
    def config_class(self) -> type[BaseModel]:
        return resolve_reference(self.config)

    @property
    def run_class(self) -> type:
        return resolve_reference(self.run)

    @property
    def training_class(self) -> type:
        return resolve_reference(self.training)

    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def require(self, operation: str, subject: str | Path) -> None:
        """Raise TaskError when this task's runs cannot do `operation`, naming what they can do."""
        if not self.supports(operation):
            raise TaskError(f"'{subject}' is a '{self.name}' run, which does not support '{operation}'; "
                            f"a '{self.name}' run supports: {', '.join(self.operations)}")  # fmt: skip


TASKS: dict[str, TaskInfo] = {}
PACKAGE_DIR = Path(__file__).resolve().parent


def register_task(info: TaskInfo) -> TaskInfo:
    if info.name in TASKS:
        raise ValueError(f"task '{info.name}' is registered twice")
    TASKS[info.name] = info
    return info


def get_task(name: Any, source: str = "config") -> TaskInfo:
    """The registered task called `name`; a ConfigError listing the registered ones otherwise."""
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), TASKS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: 'task': unknown task {name!r}; registered tasks: {', '.join(TASKS)}{hint}")
    return TASKS[name]


def task_of(raw: dict[str, Any], source: str = "config") -> TaskInfo:
    """The task a raw config mapping belongs to (its `task` key; absent = "classify")."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    return get_task(raw.get("task", DEFAULT_TASK), source)


def validate_config(raw: dict[str, Any], source: str = "config") -> BaseModel:
    """Validate a raw mapping into its task's config class; a ConfigError naming every bad key otherwise."""
    return validate_section(task_of(raw, source).config_class, raw, source)


def load_config(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> BaseModel:
    """A YAML config file (with dotted overrides) validated into its task's config class. A config class with a
    `resolve_paths(raw, folder)` hook gets to resolve the file paths the config names against the config's folder."""
    raw = read_yaml(path, "config file")
    if overrides:
        raw = apply_overrides(raw, overrides)
    config_class = task_of(raw, str(path)).config_class
    if hasattr(config_class, "resolve_paths"):
        raw = config_class.resolve_paths(raw, Path(path).parent)
    return validate_config(raw, source=str(path))


def as_config(config: str | Path | BaseModel | dict, overrides: list[str] | dict[str, Any] | None = None) -> BaseModel:
    """A config from a YAML path, a raw mapping or a config object, with overrides applied."""
    if isinstance(config, str | Path):
        return load_config(config, overrides)
    raw = config if isinstance(config, dict) else config.model_dump(mode="json")
    return validate_config(apply_overrides(raw, overrides or {}))


# ---------------------------------------------------------------------------------------------- run directories
def shipped_runs() -> dict[str, Path]:
    """Every run shipped inside the package, by name ("easy-vqa-bridge")."""
    return {name: PACKAGE_DIR / folder for info in TASKS.values() for name, folder in info.shipped.items()}


@dataclass(frozen=True)
class RunRef:
    """A finished run directory, its task and its validated config (read once)."""

    path: Path
    task: TaskInfo
    cfg: BaseModel


def resolve_run(run: str | Path | RunRef) -> RunRef:
    """A run directory (or the name of a shipped run) → its task and config, checking the run is complete.

    Raises:
        CheckpointError: no such run, an unreadable config, or a file the task's runs need is missing.
    """
    if isinstance(run, RunRef):
        return run
    shipped = shipped_runs()
    path = shipped.get(str(run), Path(run))
    config = path / "config.yaml"
    is_shipped = str(run) in shipped
    if is_shipped and not config.is_file():
        raise CheckpointError(f"the shipped run '{run}' is incomplete: {config} is missing; reinstall vlfuse")
    if not config.is_file():
        names = ", ".join(shipped) or "none"
        raise CheckpointError(f"'{run}' is neither a run directory (it has no config.yaml) nor a shipped run ({names})")
    try:
        raw = yaml.safe_load(config.read_text()) or {}
        info = task_of(raw, str(config))
        cfg = validate_section(info.config_class, raw, str(config))
    except (ConfigError, yaml.YAMLError) as err:
        raise CheckpointError(f"run directory '{path}': {err}") from None
    missing = [name for name in info.required_files if not (path / name).is_file()]
    if missing and is_shipped:
        raise CheckpointError(f"the shipped run '{run}' is incomplete: {', '.join(missing)} missing from {path}; "
                              "reinstall vlfuse")  # fmt: skip
    if missing:
        raise CheckpointError(f"run directory '{run}' has no {', '.join(missing)}; is it a finished vlfuse "
                              f"'{info.name}' run?")  # fmt: skip
    return RunRef(path, info, cfg)


def load_run(run: str | Path | RunRef, *, device: str = "cpu") -> Any:
    """A finished run directory (or shipped run name) as its task's run object: `ClassifyRun`, `RetrievalRun`,
    `BridgeRun`, …"""
    ref = run if isinstance(run, RunRef) else resolve_run(run)
    return ref.task.run_class.load(ref.path, ref.cfg, device=device)


def load_run_for(run: str | Path | RunRef, operation: str, *, device: str = "cpu") -> Any:
    """`load_run` for one operation ("predict", "ask", "search", …): a TaskError naming the task and what it supports
    when the run's task cannot do it."""
    ref = resolve_run(run)
    ref.task.require(operation, ref.path if isinstance(run, RunRef) else run)  # as the user named it
    return load_run(ref, device=device)
