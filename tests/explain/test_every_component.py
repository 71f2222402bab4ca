"""Every registered image encoder, text encoder and fusion can be explained: finite maps of the input's size, word
scores per real token, the Shapley split adds up; Grad-CAM is refused clearly where a tower has no spatial map."""

import pytest
import torch
from component_runs import combos, random_run
from live_server import easy_vqa_image
from torch import nn

from vlfuse.errors import ConfigError
from vlfuse.explain.attribution import last_spatial_layer
from vlfuse.explain.example import explain_example


@pytest.mark.parametrize(("image", "text", "fusion"), combos())
def test_every_registered_component_explains(tmp_path, image, text, fusion):
    run = random_run(tmp_path, image, text, fusion)
    reads_image, reads_text = run.model.image_encoder is not None, run.model.text_encoder is not None
    methods = ("ig", "occlusion", "gradcam")
    e = explain_example(run, easy_vqa_image(0), "what color is the shape?", methods=(*methods, "attention"), steps=4)
    size = run.cfg.data.image_size
    assert set(e.maps) == (set(methods) | ({"attention"} if "attention" in fusion else set()) if reads_image
                           else set())  # fmt: skip
    for method in methods if reads_image else ():
        heat = e.maps[method]
        assert heat.shape == (size, size) and torch.isfinite(heat).all(), method
        assert isinstance(e.result["pixels"][method]["deletion"]["passed"], bool)
    if reads_text:
        words = e.result["words"]
        assert len(words["ig"]) == len(words["tokens"]) == len(words["occlusion"]) > 0
        assert all(map(torch.isfinite, torch.tensor(words["ig"])))
    else:
        assert "words" not in e.result
    if reads_image and reads_text:
        assert e.result["modality"]["efficiency_error"] < 1e-5


def test_grad_cam_is_refused_clearly_without_a_spatial_map():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with pytest.raises(ConfigError, match="Grad-CAM needs a spatial feature map.*use --method ig or occlusion"):
        last_spatial_layer(flat, torch.zeros(1, 3, 4, 4))
