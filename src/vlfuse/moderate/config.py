"""The moderation config (`task: moderate`): the classify sections (data, model, train) plus the policy and how
scores are calibrated. The data must be multilabel or binary: one score per label."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from vlfuse.classify.config import ClassifyConfig
from vlfuse.moderate.calibration import CalibrationConfig
from vlfuse.moderate.policy import Policy, policy_from


class ModerateConfig(ClassifyConfig):
    task: Literal["moderate"] = "moderate"  # type: ignore[assignment]
    policy: Policy  # inline, or the path of a policy YAML file (read once; the run keeps it inline)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)

    @field_validator("policy", mode="before")
    @classmethod
    def _read_policy(cls, v):
        return policy_from(v)
