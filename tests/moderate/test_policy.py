"""Threshold and review-band search on synthetic scores with known answers; policy file errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from tiny_configs import TINY_MODERATE

from vlfuse.errors import ConfigError
from vlfuse.moderate.policy import (
    Policy,
    choose_band,
    choose_threshold,
    confusion_at,
    label_decision,
    most_severe,
    wilson_interval,
)
from vlfuse.task import validate_config

# 1,000 negatives at 0.000 … 0.999 and 100 positives at 0.500 … 0.995: every score distinct
NEG = np.arange(1000) / 1000
POS = 0.5 + np.arange(100) / 200
SCORES = np.r_[NEG, POS]
LABELS = np.r_[np.zeros(1000), np.ones(100)]


def test_max_fpr_takes_the_lowest_threshold_that_keeps_the_false_positive_rate():
    choice = choose_threshold(SCORES, LABELS, "max_fpr", 0.01)
    # 10 negatives (0.990 … 0.999) may be flagged: the threshold lies between the 10th and 11th highest negative
    assert choice.threshold == pytest.approx(0.9895) and choice.met
    assert confusion_at(SCORES, LABELS, choice.threshold)["fpr"]["value"] == pytest.approx(0.01)
    next_lower = SCORES[SCORES < choice.threshold].max()
    assert confusion_at(SCORES, LABELS, next_lower)["fpr"]["value"] > 0.01


def test_a_rate_cap_is_not_spent_without_gaining_recall():
    # every positive above every negative: recall is 100 % well before 1 % of the negatives are flagged
    scores = np.r_[np.linspace(0, 0.5, 1000), np.linspace(0.6, 1.0, 100)]
    choice = choose_threshold(scores, LABELS, "max_fpr", 0.01)
    assert choice.threshold == pytest.approx(0.55) and choice.achieved == 0.0  # midway between the classes
    assert choose_threshold(scores, LABELS, "min_precision", 0.5).threshold == pytest.approx(0.55)


def test_min_recall_takes_the_highest_threshold_that_keeps_the_recall():
    choice = choose_threshold(SCORES, LABELS, "min_recall", 0.9)
    # 90 of 100 above: between the 90th and the 91st highest positive (a negative at 0.549 lies between them)
    assert POS[9] < choice.threshold < POS[10] and choice.achieved == pytest.approx(0.9)
    assert confusion_at(SCORES, LABELS, choice.threshold)["recall"]["value"] == pytest.approx(0.9)


def test_min_precision_reports_an_unreachable_target():
    mixed = np.r_[np.zeros(50), np.ones(50)]
    choice = choose_threshold(np.full(100, 0.5), mixed, "min_precision", 0.9)  # one score: precision is 0.5
    assert not choice.met and choice.achieved == pytest.approx(0.5)
    # precision at each cut, top down: 1/1, 1/2, 2/3, 2/4, 2/5, 3/6
    scores, labels = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), np.array([1, 0, 1, 0, 0, 1])
    assert choose_threshold(scores, labels, "min_precision", 0.6).threshold == pytest.approx(0.65)  # 2 of 3 found
    assert choose_threshold(scores, labels, "min_precision", 0.5).threshold == pytest.approx(0.4)  # all 3 found
    assert choose_threshold(scores, labels, "min_precision", 0.99).threshold == pytest.approx(0.85)


def test_a_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="0 positive"):
        choose_threshold(NEG, np.zeros(1000), "max_fpr", 0.01)


def test_review_band_keeps_automatic_decisions_right():
    # negatives at 0 … 0.6, positives at 0.4 … 1.0: the overlap 0.4 … 0.6 is where people must look
    scores = np.r_[np.linspace(0, 0.6, 1000), np.linspace(0.4, 1.0, 1000) + 1e-6]
    labels = np.r_[np.zeros(1000), np.ones(1000)]
    threshold = choose_threshold(scores, labels, "max_fpr", 0.05).threshold
    low, high = choose_band(scores, labels, threshold, 0.99)
    assert 0.4 < low <= threshold <= high < 0.6
    flagged, allowed = scores >= high, scores < low
    assert labels[flagged].mean() >= 0.99 and (1 - labels[allowed]).mean() >= 0.99
    # the band is the narrowest: one step further either way breaks the precision
    assert labels[scores >= scores[scores < high].max()].mean() < 0.99
    assert (1 - labels[scores <= scores[scores > low].min()]).mean() < 0.99
    # asking for the 95 % lower bound widens the band until each side's Wilson lower bound holds the precision
    safe_low, safe_high = choose_band(scores, labels, threshold, 0.99, lower_bound=True)
    assert safe_low < low and safe_high > high
    flagged, allowed = scores >= safe_high, scores < safe_low
    assert wilson_interval(int(labels[flagged].sum()), int(flagged.sum()))[0] >= 0.99
    assert wilson_interval(int((1 - labels[allowed]).sum()), int(allowed.sum()))[0] >= 0.99


def test_perfectly_separated_scores_need_no_review():
    scores, labels = np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1, 50)], np.r_[np.zeros(50), np.ones(50)]
    threshold = choose_threshold(scores, labels, "max_fpr", 0.01).threshold
    low, high = choose_band(scores, labels, threshold, 0.995)
    assert [label_decision(p, "block", low, high) for p in scores].count("review") == 0


def test_decisions():
    assert [label_decision(p, "block", 0.2, 0.8) for p in (0.1, 0.2, 0.5, 0.8)] == ["allow", "review", "review",
                                                                                   "block"]  # fmt: skip
    assert label_decision(0.9, "review", 0.5, 0.5) == "review" and label_decision(0.4, "block", 0.5, 0.5) == "allow"
    assert [label_decision(p, "allow", 0.2, 0.8) for p in (0.1, 0.5, 0.9)] == ["allow"] * 3  # reported, not acted on
    assert most_severe(["allow", "block", "review"]) == "block" and most_severe([]) == "allow"


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 100)
    assert low == pytest.approx(0.0215, abs=1e-4) and high == pytest.approx(0.1118, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"target": {"max_fpr": 1.5}}, "max_fpr must be a rate between 0 and 1"),
        ({"target": {"max_fpr": 0}}, "max_fpr must be a rate between 0 and 1"),
        ({"target": {"min_f1": 0.9}}, "expected exactly one of max_fpr, min_recall, min_precision"),
        ({"target": {"max_fpr": 0.01, "min_recall": 0.9}}, "expected exactly one of"),
        ({"target": {"max_fpr": 0.01}, "action": "delete"}, "policy.labels.mismatch.action"),
        ({"target": {"max_fpr": 0.01}, "review_precision": 1.2}, "policy.labels.mismatch.review_precision"),
    ],
)
def test_bad_policy_rules_are_named(rule, message):
    raw = copy.deepcopy(TINY_MODERATE)
    raw["policy"] = {"labels": {"mismatch": rule}}
    with pytest.raises(ConfigError, match=message):
        validate_config(raw)


def test_a_policy_file_that_is_missing_or_empty_is_named(tmp_path):
    raw = copy.deepcopy(TINY_MODERATE)
    raw["policy"] = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="policy file .*nope.yaml' does not exist"):
        validate_config(raw)
    (tmp_path / "empty.yaml").write_text("labels: {}\n")
    raw["policy"] = str(tmp_path / "empty.yaml")
    with pytest.raises(ConfigError, match="at least one label"):
        validate_config(raw)


def test_an_unknown_policy_label_is_named():
    policy = Policy.model_validate({"labels": {"spam": {"target": {"max_fpr": 0.01}}}})
    with pytest.raises(ConfigError, match="unknown label\\(s\\) 'spam'; the data's labels are 'mismatch'"):
        policy.check_labels(["mismatch", "prohibited", "abusive"])


def test_a_relative_policy_path_is_read_beside_the_config(tmp_path, monkeypatch):
    import yaml

    from vlfuse.task import load_config

    (tmp_path / "policies").mkdir()
    (tmp_path / "policies/p.yaml").write_text("labels:\n  abusive: {target: {min_recall: 0.9}}\n")
    raw = copy.deepcopy(TINY_MODERATE) | {"policy": "policies/p.yaml"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path.parent)  # not the config's folder
    cfg = load_config(tmp_path / "config.yaml")
    assert list(cfg.policy.labels) == ["abusive"] and cfg.policy.labels["abusive"].target == {"min_recall": 0.9}


def test_array_decisions_agree_with_one_at_a_time():
    from vlfuse.moderate.policy import label_decisions

    p = np.linspace(0, 1, 101)
    for action in ("block", "review", "allow"):
        assert list(label_decisions(p, action, 0.3, 0.7)) == [label_decision(x, action, 0.3, 0.7) for x in p]
