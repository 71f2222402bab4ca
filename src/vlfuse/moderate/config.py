"""The moderation config (`task: moderate`): the classify sections (data, model, train) plus the policy and how
scores are calibrated. The data must be multilabel or binary: one score per label."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vlfuse.classify.config import ClassifyConfig
from vlfuse.moderate.calibration import CalibrationConfig
from vlfuse.moderate.policy import Policy, policy_from


class ModerateConfig(ClassifyConfig):
    task: Literal["moderate"] = "moderate"  # type: ignore[assignment]
    policy: Policy  # inline, or the path of a policy YAML file (read once; the run keeps it inline)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)

    @classmethod
    def resolve_paths(cls, raw: dict, folder: Path) -> dict:
        """A relative policy path that is not there from the working directory is read beside the config file."""
        policy = raw.get("policy")
        if isinstance(policy, str) and not Path(policy).is_absolute() and not Path(policy).exists():
            beside = folder / policy
            if beside.exists():
                return {**raw, "policy": str(beside)}
        return raw

    @field_validator("policy", mode="before")
    @classmethod
    def _read_policy(cls, v):
        return policy_from(v)
