"""Learning tests on real easy-VQA questions: a working fusion must beat what either modality can do alone.

Yes/no questions ("is there a red shape?") and colour/shape questions need the image *and* the question, so a
fusion that drops or scrambles one modality cannot get past the unimodal baselines measured here.
"""

from pathlib import Path

import pytest

from vlfuse.task import load_config
from vlfuse.train.runner import run_training

MAIN_CONFIG = Path(__file__).parents[1] / "configs" / "easy_vqa.yaml"


def _accuracy(tmp_path, fusion: dict, epochs: int) -> float:
    """Test accuracy of the main job's config (all training questions) with another fusion and fewer epochs."""
    overrides = {"model.fusion": fusion, "train.epochs": epochs, "data.test_limit": 3000, "train.threads": 2}
    summary = run_training(load_config(MAIN_CONFIG, overrides), tmp_path / fusion["name"])
    return summary["metrics"]["test"]["accuracy"]


@pytest.fixture(scope="module")
def best_unimodal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unimodal")
    scores = {
        "image_only": _accuracy(tmp, {"name": "image_only"}, 2),
        "text_only": _accuracy(tmp, {"name": "text_only"}, 4),
    }
    assert max(scores.values()) < 0.75, scores  # neither modality alone answers most questions
    return max(scores.values())


@pytest.mark.parametrize(
    "fusion",
    [
        {"name": "product", "dim": 128},
        pytest.param({"name": "concat", "dim": 128}, marks=pytest.mark.slow),
        pytest.param({"name": "attention", "dim": 64}, marks=pytest.mark.slow),
    ],
)
def test_fusion_beats_both_modalities_alone(tmp_path, best_unimodal, fusion):
    fused = _accuracy(tmp_path, fusion, 5)
    assert fused > best_unimodal + 0.2, (fused, best_unimodal)
