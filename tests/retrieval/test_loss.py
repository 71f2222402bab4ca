"""The contrastive loss: CLIP reference, symmetry, duplicate captions as positives."""

import pytest
import torch
import torch.nn.functional as F

from vlfuse.retrieval.loss import clip_loss, contrastive_loss, positive_mask


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_equals_clip_loss_when_every_key_differs():
    image, text = unit(8, 16, seed=1), unit(8, 16, seed=2)
    keys = torch.arange(8)
    reference = float(clip_loss(image, text, 10.0))
    assert float(contrastive_loss(image, text, 10.0, positive_mask(keys))) == pytest.approx(reference)


def test_symmetric_in_its_two_towers():
    image, text = unit(6, 8, seed=3), unit(6, 8, seed=4)
    pos = positive_mask(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 3, 3, 4]))
    forward = contrastive_loss(image, text, 7.0, pos)
    swapped = contrastive_loss(text, image, 7.0, pos.t())
    assert float(forward) == pytest.approx(float(swapped), rel=1e-6)
    # not symmetric by accident: different embeddings give a different loss
    assert float(contrastive_loss(image, unit(6, 8, seed=5), 7.0, pos)) != pytest.approx(float(forward))


def test_duplicate_captions_are_pulled_together_not_pushed_apart():
    """Rows 0 and 1 are two images of "a red circle" (same key). With unit-vector images, logits[i, j] is
    text j's i-th coordinate, so the gradient on the text matrix is the gradient on the logits. CLIP's loss treats
    (image 0, caption 1) as a negative and pushes it down; ours pulls it up (it is a correct caption)."""
    logits = torch.tensor([[2.0, 1, 0, 0], [1, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]])
    image = torch.eye(4)
    keys = torch.tensor([0, 0, 1, 2])
    text = logits.t().clone().requires_grad_(True)  # (4, 4) row j = text j
    contrastive_loss(image, text, 1.0, positive_mask(keys)).backward()
    ours = text.grad.t()  # (4, 4) d loss / d logits
    text.grad = None
    clip_loss(image, text, 1.0).backward()
    clip = text.grad.t()
    assert ours[0, 1] < 0 and ours[1, 0] < 0  # raising the duplicate pair's similarity lowers our loss
    assert clip[0, 1] > 0 and clip[1, 0] > 0  # CLIP's loss rises: it pushes the duplicates apart
    assert torch.allclose(ours[2:, 2:], clip[2:, 2:])  # rows with unique keys are treated alike


def test_positive_mask_marks_shared_keys_and_images():
    mask = positive_mask(torch.tensor([0, 1, 2, 0]), torch.tensor([5, 6, 6, 7]))
    expected = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_a_pair_must_be_its_own_positive():
    with pytest.raises(ValueError, match="diagonal"):
        contrastive_loss(unit(2, 4), unit(2, 4), 1.0, torch.zeros(2, 2, dtype=torch.bool))
