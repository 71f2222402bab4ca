"""Atomic safetensors checkpoints holding model, optimizer, scheduler, RNG and trainer state in one file.

One file per checkpoint, written to a temporary name in the same folder, fsynced, then `os.replace`d over the
old one: a crash at any point leaves either the old complete checkpoint or the new complete one, never a mix.
Non-tensor state (optimizer hyper-parameters, scheduler, trainer counters) travels as JSON in the safetensors
metadata, so no pickle is ever loaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlfuse.errors import CheckpointError


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file so that `path` is only ever replaced by a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        contiguous = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # unshare storage
        save_file(contiguous, str(tmp), metadata=metadata)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "format": "vlfuse-training-state-1",
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
    if metadata.get("format") != "vlfuse-training-state-1":
        raise CheckpointError(f"checkpoint '{path}' is not a vlfuse training state (format={metadata.get('format')})")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint '{path}' does not match the model built from the config: {err}") from None
    optimizer.load_state_dict(_unflatten_optimizer(tensors, json.loads(metadata["optimizer"])))
    scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(metadata["trainer"])


def save_model_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_save_tensors(dict(model.state_dict()), path, metadata)


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    tensors, _ = read_checkpoint(path)
    try:
        model.load_state_dict(tensors)
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
