"""Atomic safetensors checkpoints holding model, optimizer, scheduler, RNG and trainer state in one file.

One file per checkpoint, written atomically (`vlfuse.atomic`): a crash at any point leaves either the old complete
checkpoint or the new complete one, never a mix; `recover_interrupted_writes` settles what a crash left behind.
Non-tensor state (optimizer hyper-parameters, scheduler, trainer counters) travels as JSON in the safetensors
metadata, so no pickle is ever loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlfuse.atomic import atomic_write, stray_temp_files
from vlfuse.errors import CheckpointError

log = logging.getLogger(__name__)
TRAINING_STATE_FORMAT = "vlfuse-training-state-1"


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file so that `path` is only ever replaced by a complete file."""
    contiguous = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # unshare storage
    atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, scalars in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(scalars)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    trainer_state: dict[str, Any],
) -> None:
    """Everything needed to continue training exactly where it stopped."""
    tensors = {f"model.{k}": v for k, v in own_state(model).items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "format": TRAINING_STATE_FORMAT,
        "optimizer": json.dumps(optim_meta),
        "scheduler": json.dumps(scheduler.state_dict()),
        "trainer": json.dumps(trainer_state),
    }
    atomic_save_tensors(tensors, path, metadata)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}' is unreadable or incomplete: {err}") from None
    return tensors, metadata


def load_training_state(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from `path`; return the trainer state dict."""
    tensors, metadata = read_checkpoint(path)
    if metadata.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"checkpoint '{path}' is not a vlfuse training state (format={metadata.get('format')})")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_own_state(model, model_state, f"checkpoint '{path}' does not match the model built from the config")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, json.loads(metadata["optimizer"])))
    scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(metadata["trainer"])


def packaged_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the frozen pretrained networks inside `model` whose weights come from an installed
    package (an encoder with `weights_from_package` and `frozen` set): the package holds them, a run does not."""
    return tuple(f"{name}.net." if name else "net." for name, module in model.named_modules()
                 if getattr(module, "weights_from_package", False) and getattr(module, "frozen", False))  # fmt: skip


def own_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without the frozen packaged networks (`packaged_prefixes`): what a run must store."""
    skip = packaged_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not (skip and k.startswith(skip))}


def load_own_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Load `tensors` into `model`; only the frozen packaged networks may be absent (they were built from their
    package). Weights saved before this rule (full state dicts) load as well."""
    result = model.load_state_dict(tensors, strict=False)
    skip = packaged_prefixes(model)
    missing = [k for k in result.missing_keys if not (skip and k.startswith(skip))]
    if missing or result.unexpected_keys:
        detail = (f"missing {missing[:5]}" if missing else "") + (
            f" unexpected {result.unexpected_keys[:5]}" if result.unexpected_keys else "")
        raise CheckpointError(f"{what}: {detail.strip()}")


def save_model_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """The weights a run stores (`own_state`), written atomically."""
    atomic_save_tensors(own_state(model), path, metadata)


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    tensors, _ = read_checkpoint(path)
    try:
        load_own_state(model, tensors, f"weights '{path}' do not match the model built from the run's config")
    except RuntimeError as err:
        raise CheckpointError(f"weights '{path}' do not match the model built from the run's config: {err}") from None


def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Make sure starting a run in `run_dir` loses nothing: a directory that already holds a run (its config.yaml)
    is only continued (`resume`) or, when asked (`overwrite`), removed first; otherwise a CheckpointError."""
    if resume or not (run_dir / "config.yaml").exists():
        return
    if not overwrite:
        raise CheckpointError(
            f"run directory '{run_dir}' already holds a run; continue it with --resume, pick another --run-dir, "
            "or pass --overwrite to replace it"
        )
    shutil.rmtree(run_dir)


def _trained_epochs(path: Path) -> int | None:
    """The epochs a complete training-state file records, or None when it is incomplete or no training state."""
    try:
        _, metadata = read_checkpoint(path)
        if metadata.get("format") != TRAINING_STATE_FORMAT:
            return None
        return int(json.loads(metadata["trainer"])["epoch"])
    except (CheckpointError, KeyError, ValueError, TypeError):
        return None


def recover_interrupted_writes(run_dir: Path) -> list[str]:
    """Settle the temporary files a killed run left under `run_dir`; returns what was done, one line each.

    A training state that was written completely (verified by reading it back: every tensor present, the trainer
    state parsed) but not yet moved into place, and is further along than the checkpoint it was to replace, takes that
    checkpoint's place. Every other temporary file is removed: a half-written one, best weights (re-saved when their
    epoch trains again) and any other file a later write recreates.
    """
    done: list[str] = []
    for tmp, target in stray_temp_files(run_dir):
        tmp_epochs = _trained_epochs(tmp)
        current = _trained_epochs(target) if target.exists() else None
        if tmp_epochs is not None and (current is None or tmp_epochs > current):
            os.replace(tmp, target)
            done.append(f"{target}: completed from {tmp.name} (epoch {tmp_epochs}, written before the interruption)")
        else:
            tmp.unlink()
            done.append(f"{tmp}: removed (an interrupted write)")
    for line in done:
        log.info("%s", line)
    return done
