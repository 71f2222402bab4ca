"""The fused conv → ReLU → max-pool kernel computes what PyTorch's three operators compute, gradients included."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from vlfuse.encoders.image.seed_cnn import SeedCNNConfig, SeedCNNEncoder
from vlfuse.kernels.conv_pool import ConvReluPool, conv_relu_pool, fused_applies


def reference_and_fused(x: torch.Tensor, conv: nn.Conv2d, grad: torch.Tensor | None = None):
    expected = torch.max_pool2d(torch.relu(conv(x)), 2)
    grad = torch.randn_like(expected) if grad is None else grad
    expected.backward(grad)
    expected_grads = conv.weight.grad.clone(), conv.bias.grad.clone()
    conv.zero_grad()
    got = ConvReluPool.apply(x, conv.weight, conv.bias)
    got.backward(grad)
    return expected.detach(), got.detach(), expected_grads, (conv.weight.grad, conv.bias.grad)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:  # sums of thousands of products: relative to their scale
    a, b = a.detach(), b.detach()
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("shape", [(4, 3, 64, 64), (4, 1, 28, 28), (3, 2, 29, 31)])
def test_values_and_gradients_match_pytorch(shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 32, 3)
    expected, got, (ew, eb), (gw, gb) = reference_and_fused(torch.rand(shape), conv)
    assert got.shape == expected.shape == (shape[0], 32, (shape[2] - 2) // 2, (shape[3] - 2) // 2)
    assert close(got, expected)
    assert close(gw, ew) and close(gb, eb)


def test_ties_of_flat_images_route_the_gradient_as_pytorch_does():
    """A flat background makes all four outputs of a window equal: the gradient goes to the first, once."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 32, 3)
    x = torch.ones(2, 3, 20, 20)
    x[:, :, 8:12, 8:12] = torch.rand(2, 3, 4, 4)  # a small shape on a flat background
    expected, got, (ew, eb), (gw, gb) = reference_and_fused(x, conv)
    assert torch.equal(got == 0, expected == 0)  # the same cells are cut by ReLU
    assert close(got, expected) and close(gw, ew) and close(gb, eb)


def test_falls_back_to_pytorch_where_the_kernel_does_not_apply():
    conv = nn.Conv2d(3, 32, 3)
    x = torch.rand(2, 3, 16, 16)
    assert fused_applies(x, conv.weight)
    assert not fused_applies(x.requires_grad_(), conv.weight)  # attributions want the image's gradient
    assert not fused_applies(x.detach().double(), conv.weight.double())
    out = conv_relu_pool(x, conv)  # requires_grad: PyTorch's operators, with the image's gradient
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    padded = nn.Conv2d(3, 32, 3, padding=1)
    assert conv_relu_pool(x.detach(), padded).shape == (2, 32, 8, 8)  # not the kernel's conv: the plain path


def test_seed_cnn_fused_and_unfused_agree():
    torch.manual_seed(0)
    fused = SeedCNNEncoder(SeedCNNConfig(), in_channels=3, image_size=32)
    plain = SeedCNNEncoder(SeedCNNConfig(fused=False), in_channels=3, image_size=32)
    plain.load_state_dict(fused.state_dict())  # the option changes no weights
    x = torch.rand(5, 3, 32, 32)
    a, b = fused(x), plain(x)
    assert a.pooled.shape == (5, fused.out_dim) and a.tokens.shape == (5, 15 * 15, 32)
    assert close(a.pooled, b.pooled) and close(a.tokens, b.tokens)


def test_under_bf16_autocast_the_kernel_computes_in_fp32():
    """Autocast leaves this layer in fp32 (it is memory-bound: fp32 is the faster one here), so the result and the
    gradients are the fp32 ones, not bf16's."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 32, 3)
    x = torch.rand(4, 3, 18, 18)
    grad = torch.randn(4, 32, 8, 8)
    expected, _, (ew, eb), _ = reference_and_fused(x, conv, grad)
    ew, eb = ew.clone(), eb.clone()
    conv.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fused_applies(x, conv.weight)
        got = conv_relu_pool(x, conv)
        assert got.dtype == torch.float32
        got.backward(grad)
    assert close(got, expected) and close(conv.weight.grad, ew) and close(conv.bias.grad, eb)


def test_loading_the_kernels_keeps_the_thread_count():
    """numba's OpenMP layer, once launched, shares the OpenMP runtime with torch; launching it must not reset the
    thread count a run chose (it did: a 1-thread training ran on 2 threads and lost its bit-identical resume)."""
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from vlfuse.kernels.conv_pool import conv_relu_pool\n"
        "conv = torch.nn.Conv2d(3, 8, 3)\n"
        "conv_relu_pool(torch.rand(2, 3, 10, 10), conv).sum().backward()\n"
        "from vlfuse.threads import set_threads\n"
        "assert torch.get_num_threads() == 1, torch.get_num_threads()\n"
        "set_threads(1)\n"
        "assert torch.get_num_threads() == 1, torch.get_num_threads()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
