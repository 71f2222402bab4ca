"""A moderation policy: per label, a target the threshold must meet, the action for flagged items and an optional
review band; the threshold and band search on validation scores; and the decision rule applied to new scores.

Policy file (YAML; the `policy` key of a moderate config, inline or as a path):

    labels:
      prohibited:
        target: {max_fpr: 0.01}      # or {min_recall: 0.95} or {min_precision: 0.99}: exactly one
        action: block                # block | review | allow (scored and reported, never acted on)
        review_precision: 0.995      # optional: a review band so automatic decisions reach this precision

Per label with calibrated probability p, threshold t and band [low, high) (low ≤ t ≤ high):
p ≥ high → the label's action; low ≤ p < high → review; p < low → allow. Without a band low = high = t.
An item's decision is the most severe over its labels: block > review > allow.

Nothing here imports torch: the inference path (`ModerateRun`, the server, the scan) uses it as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from vlfuse.config import Section, read_yaml
from vlfuse.errors import ConfigError

DECISIONS = ("allow", "review", "block")  # in increasing severity
TARGET_KINDS = ("max_fpr", "min_recall", "min_precision")


class LabelRule(Section):
    target: dict[str, float]  # exactly one of TARGET_KINDS → a rate in (0, 1)
    action: Literal["block", "review", "allow"] = "block"  # allow: the label is scored and reported, never acted on
    review_precision: float | None = Field(None, gt=0.5, lt=1.0)
    # lower_bound: the band is chosen so that the 95 % Wilson lower bound of each automatic side's precision on val
    # reaches review_precision (so it holds on new data with high probability); estimate: the point estimate does
    review_guarantee: Literal["lower_bound", "estimate"] = "lower_bound"

    @field_validator("target")
    @classmethod
    def _one_target(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) != 1 or next(iter(v)) not in TARGET_KINDS:
            raise ValueError(f"expected exactly one of {', '.join(TARGET_KINDS)}, e.g. {{max_fpr: 0.01}}; got {v}")
        kind, value = next(iter(v.items()))
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(f"{kind} must be a rate between 0 and 1 (exclusive), e.g. 0.01; got {value!r}")
        return {kind: float(value)}

    @property
    def kind(self) -> str:
        return next(iter(self.target))

    @property
    def value(self) -> float:
        return next(iter(self.target.values()))


class Policy(Section):
    labels: dict[str, LabelRule]

    @model_validator(mode="after")
    def _some_labels(self) -> Policy:
        if not self.labels:
            raise ValueError("a policy needs at least one label under 'labels'")
        return self

    def check_labels(self, label_names: list[str], source: str = "policy") -> None:
        """ConfigError naming policy labels the data does not have."""
        unknown = [name for name in self.labels if name not in label_names]
        if unknown:
            raise ConfigError(f"{source}: unknown label(s) {', '.join(map(repr, unknown))}; the data's labels are "
                              f"{', '.join(map(repr, label_names))}")  # fmt: skip


def policy_from(value: Any) -> Any:
    """A `policy` config value: a YAML file path (read here, so the run keeps the policy inline) or a mapping."""
    if isinstance(value, str):
        return read_yaml(value, "policy file")
    return value


# ------------------------------------------------------------------------------------------------ rates and intervals
def wilson_bounds(successes, total, z: float = 1.96):
    """The Wilson score interval of binomial proportions (95 % by default), element-wise: (low, high), (0, 1) where
    total is 0."""
    successes, total = np.asarray(successes, np.float64), np.asarray(total, np.float64)
    n = np.maximum(total, 1)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    empty = total == 0
    return np.where(empty, 0.0, np.maximum(0.0, centre - half)), np.where(empty, 1.0, np.minimum(1.0, centre + half))


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    low, high = wilson_bounds(successes, total, z)
    return float(low), float(high)


def rate(successes: int, total: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, total)
    return {"value": successes / total if total else None, "ci95": [low, high], "n": total}


def confusion_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """FPR, recall and precision (with Wilson 95 % intervals) of flagging scores ≥ threshold."""
    flagged, positive = scores >= threshold, labels.astype(bool)
    tp, fp = int((flagged & positive).sum()), int((flagged & ~positive).sum())
    return {"fpr": rate(fp, int((~positive).sum())), "recall": rate(tp, int(positive.sum())),
            "precision": rate(tp, tp + fp)}  # fmt: skip


# -------------------------------------------------------------------------------------------------- threshold search
@dataclass(frozen=True)
class Choice:
    """A chosen threshold and whether the target was reachable on the scores it was chosen on."""

    threshold: float
    met: bool
    achieved: float  # the target's rate at the threshold (on the scores it was chosen on)


def _sorted_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores descending and, for a threshold at each, the counts of positives / negatives ≥ it."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return s[last], tp, fp


def _cuts(s: np.ndarray) -> np.ndarray:
    """For distinct descending scores s, the threshold that flags s[0..i] for each i: midway to the next lower
    score (the last is s[-1] itself). The counts on s are those of flagging ≥ s[i], and new scores near an edge
    fall on the side they lean to."""
    return np.r_[(s[:-1] + s[1:]) / 2, s[-1:]]


def _cut(s: np.ndarray, i: int) -> float:
    return float(_cuts(s)[i])


def _highest_with_most_recall(ok: np.ndarray, tp: np.ndarray) -> int:
    """Among the allowed cuts `ok` (ascending indices into descending scores), the highest threshold that reaches
    the most true positives: a rate cap is a budget, not a quota — no false positive is spent on no gain."""
    return int(ok[np.flatnonzero(tp[ok] == tp[ok[-1]])[0]])


def choose_threshold(scores: np.ndarray, labels: np.ndarray, kind: str, value: float) -> Choice:
    """The threshold (flag where score ≥ it) meeting a target on (scores, labels): for max_fpr / min_precision the
    most recall (and, at that recall, the fewest false positives); for min_recall the fewest false positives."""
    s, tp, fp = _sorted_counts(np.asarray(scores, float), np.asarray(labels))
    pos, neg = int(tp[-1]), int(fp[-1])
    if pos == 0 or neg == 0:
        raise ValueError(f"cannot choose a threshold for {kind}: the scores hold {pos} positive(s) and {neg} "
                         "negative(s); both are needed")  # fmt: skip
    if kind == "max_fpr":
        fpr = fp / neg
        ok = np.flatnonzero(fpr <= value)
        if len(ok) == 0:  # even the highest score flags too many negatives: flag nothing
            return Choice(float(np.nextafter(s[0], np.inf)), True, 0.0)
        i = _highest_with_most_recall(ok, tp)
        return Choice(_cut(s, i), True, float(fpr[i]))
    if kind == "min_recall":
        recall = tp / pos
        i = int(np.flatnonzero(recall >= value)[0])  # recall reaches 1 at the lowest score, so one exists
        return Choice(_cut(s, i), True, float(recall[i]))
    precision = tp / (tp + fp)
    ok = np.flatnonzero(precision >= value)
    if len(ok) == 0:
        i = int(np.argmax(precision))
        return Choice(_cut(s, i), False, float(precision[i]))
    i = _highest_with_most_recall(ok, tp)
    return Choice(_cut(s, i), True, float(precision[i]))


def choose_band(
    scores: np.ndarray, labels: np.ndarray, threshold: float, precision: float, *, lower_bound: bool = False
) -> tuple[float, float]:
    """The narrowest review band [low, high) around `threshold` such that flagging scores ≥ high is right (precision)
    and allowing scores < low is right (negative predictive value), each at least `precision`, on (scores, labels)
    — or, with `lower_bound`, each with its 95 % Wilson lower bound at least `precision`.
    high = +inf when no threshold reaches the precision (nothing is flagged automatically), low = -inf likewise."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    s, tp, fp = _sorted_counts(scores, labels)
    cuts = _cuts(s)  # flagging ≥ cuts[i] flags s[0..i]; allowing < cuts[i] allows s[i+1..]
    prec = wilson_bounds(tp, tp + fp)[0] if lower_bound else tp / (tp + fp)
    ok = np.flatnonzero((cuts >= threshold) & (prec >= precision))
    high = float(cuts[ok[-1]]) if len(ok) else math.inf
    below_neg, below_pos = int((~labels).sum()) - fp, int(labels.sum()) - tp  # the rows after i
    below = below_neg + below_pos
    npv = np.where(below > 0, below_neg / np.maximum(below, 1), 1.0)
    if lower_bound:
        npv = wilson_bounds(below_neg, below)[0]
    ok = np.flatnonzero((cuts <= threshold) & (npv >= precision))
    low = float(cuts[ok[0]]) if len(ok) else -math.inf  # the highest such cut
    return min(low, threshold), max(high, threshold)


# --------------------------------------------------------------------------------------------------------- decisions
def band_of(rule: dict[str, Any]) -> tuple[float, float]:
    """(low, high) of a fitted label rule (as moderation.json holds it: null for an unbounded end) as ∓inf."""
    low, high = rule["low"], rule["high"]
    return (-math.inf if low is None else low), (math.inf if high is None else high)


def label_decision(p: float, action: str, low: float, high: float) -> str:
    """One label's decision for calibrated probability p: its action at ≥ high, review in [low, high), else allow
    (always allow for a label whose action is allow)."""
    if action == "allow":
        return "allow"
    if p >= high:
        return action
    return "review" if p >= low else "allow"


def label_decisions(p: np.ndarray, action: str, low: float, high: float) -> np.ndarray:
    """`label_decision` for an array of probabilities at once: an array of decision strings."""
    p = np.asarray(p, dtype=np.float64)
    if action == "allow":
        return np.full(p.shape, "allow", dtype=object)
    return np.where(p >= high, action, np.where(p >= low, "review", "allow")).astype(object)


def most_severe(decisions: list[str]) -> str:
    return max(decisions, key=DECISIONS.index, default="allow")
