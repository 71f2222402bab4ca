"""Conv2d 3×3 (no padding) → ReLU → MaxPool 2×2 as one CPU kernel: the classic model's image tower, same maths.

PyTorch runs the three as separate passes over the full-resolution map: (B, 32, 62, 62) floats are written by the
convolution, read and written by ReLU, read by max-pool (which also writes int64 indices), and on the way back
scattered to full resolution again, masked by ReLU and read by the convolution's weight gradient. On a CPU these
passes, not the multiply-adds, take most of the time (per batch of 32 on 2 cores: ReLU, pool and their backward
~20 ms of a ~45 ms step). Here the convolution is oneDNN's, as before; one compiled pass then reads its map once
and writes only the pooled map (ReLU folded in: relu∘max = max∘relu) and a one-byte "which of the four" index.
The backward pass reads that index, so the weight gradient visits the one position per pooled cell that receives a
gradient, gathering its input patch, instead of a dense full-resolution gradient.

The forward result equals `max_pool2d(relu(conv2d(x, w, b)), 2)` exactly (the same convolution, the same maxima);
the gradients equal PyTorch's up to float rounding of the sums, with PyTorch's tie rule: the first maximum in
row-major window order receives the gradient, and a cell whose maximum is ≤ 0 receives none (ReLU's gradient at 0
is 0). Under bf16 autocast it computes in fp32 (autocast's rule for ops it has no reduced-precision form of): on a CPU
this layer is bound by memory passes, not by multiply-adds, so fp32 here beats PyTorch's bf16 convolution and pool
(classic model, 2 AVX-512-bf16 cores: 1,810 vs 1,234 samples/s). Compiled by numba on first use (cached on disk);
`fused_applies` says when it is used, and everything else — GPUs, ONNX export, gradients with respect to the image —
takes PyTorch's own operators.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import get_num_threads, njit, prange
from torch import Tensor

from vlfuse.threads import set_threads

NO_GRADIENT = 255  # index value of a pooled cell whose maximum is ≤ 0

# launch numba's thread pool now, keeping torch's thread count (launching it on the first parallel call would reset
# the OpenMP runtime it shares with torch to all cores; `set_threads` sets numba first, then torch)
set_threads(torch.get_num_threads())


@njit(parallel=True, cache=True)
def _relu_pool_kernel(conv, pooled, which):  # pragma: no cover  (compiled; tested through the Function)
    """conv (B, H', W', F) channels-last → pooled (B, F, h, w), max of each 2×2 window or 0 when that is ≤ 0, and
    which (B, F, h, w) uint8: the window position (0..3, row-major) of the first maximum, or NO_GRADIENT."""
    batch, filters, rows, cols = pooled.shape
    for task in prange(batch * rows):
        b, i = task // rows, task % rows
        top, bottom = conv[b, 2 * i], conv[b, 2 * i + 1]  # (W', F) each
        for j in range(cols):
            a, c, d, e = top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]  # (F,) each, contiguous
            for f in range(filters):
                best, first = a[f], 0
                if c[f] > best:  # strict: the first maximum wins, as in max_pool2d
                    best, first = c[f], 1
                if d[f] > best:
                    best, first = d[f], 2
                if e[f] > best:
                    best, first = e[f], 3
                if best > 0:
                    pooled[b, f, i, j], which[b, f, i, j] = best, first
                else:
                    pooled[b, f, i, j], which[b, f, i, j] = 0.0, NO_GRADIENT


@njit(parallel=True, fastmath=True, cache=True)
def _weight_grad_kernel(x, grad, which, partial):  # pragma: no cover
    """x (B, C, H, W); grad, which (B, F, h, w) → partial (P, F, C·9 + 1): per-worker sums of the weight gradient
    (the last column is the bias gradient), added up by the caller.

    Per (image, pooled row) the four offsets' input patches are gathered once, (w, 4, C·9 + 1) with a trailing 1 for
    the bias; each pooled cell then adds its gradient times the patch its index names to its filter's row.
    """
    batch, channels = x.shape[0], x.shape[1]
    filters, rows, cols = grad.shape[1], grad.shape[2], grad.shape[3]
    workers, width = partial.shape[0], partial.shape[2]
    for p in prange(workers):
        acc = partial[p]  # (F, C·9 + 1)
        patches = np.empty((cols, 4, width), np.float32)
        for task in range(p, batch * rows, workers):
            b, i = task // rows, task % rows
            for j in range(cols):
                for k in range(4):
                    r0, c0 = 2 * i + (k >> 1), 2 * j + (k & 1)
                    for c in range(channels):
                        for ti in range(3):
                            for tj in range(3):
                                patches[j, k, c * 9 + ti * 3 + tj] = x[b, c, r0 + ti, c0 + tj]
                    patches[j, k, width - 1] = 1.0
            for f in range(filters):
                row = acc[f]
                for j in range(cols):
                    k = which[b, f, i, j]
                    if k != NO_GRADIENT:
                        g, patch = grad[b, f, i, j], patches[j, k]
                        for q in range(width):
                            row[q] += g * patch[q]


class ConvReluPool(torch.autograd.Function):
    """(x, weight, bias) → max_pool2d(relu(conv2d(x, weight, bias)), 2); gradients for weight and bias only."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # under autocast too: fp32, autocast off
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        x = x.contiguous()  # (B, C, H, W)
        # channels-last: oneDNN's direct kernel for this shape (on a 2-core AVX-512 machine 1.7 vs 15 ms for
        # (32, 3, 64, 64) → (32, 32, 62, 62) in NCHW), and each pooling window reads contiguous filter vectors
        image = x.contiguous(memory_format=torch.channels_last)
        conv = torch.nn.functional.conv2d(image, weight.detach(), bias.detach())  # (B, F, H-2, W-2), channels-last
        nhwc = conv.permute(0, 2, 3, 1).contiguous()  # (B, H-2, W-2, F): a view, unless the layout was not kept
        rows, cols = conv.shape[2] // 2, conv.shape[3] // 2
        pooled = x.new_empty(x.shape[0], weight.shape[0], rows, cols)  # (B, F, h, w)
        which = torch.empty(pooled.shape, dtype=torch.uint8)  # (B, F, h, w)
        _relu_pool_kernel(nhwc.numpy(), pooled.numpy(), which.numpy())
        ctx.save_for_backward(x, which)
        ctx.weight_shape = weight.shape
        return pooled

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, Tensor]:  # type: ignore[override]
        x, which = ctx.saved_tensors
        filters, channels = ctx.weight_shape[:2]
        partial = np.zeros((get_num_threads(), filters, channels * 9 + 1), np.float32)
        _weight_grad_kernel(x.numpy(), grad.contiguous().numpy(), which.numpy(), partial)
        total = torch.from_numpy(partial.sum(0))  # (F, C·9 + 1)
        return None, total[:, : channels * 9].reshape(ctx.weight_shape), total[:, channels * 9].contiguous()


def fused_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether `conv_relu_pool` runs the fused kernel for these tensors (else PyTorch's operators)."""
    exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()
    return (
        not exporting
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() == 4
        and not x.requires_grad
        and tuple(weight.shape[2:]) == (3, 3)
    )


def conv_relu_pool(x: Tensor, conv: torch.nn.Conv2d) -> Tensor:
    """max_pool2d(relu(conv(x)), 2): (B, C, H, W) → (B, F, h, w), fused where `fused_applies` and `conv` is 3×3,
    stride 1, unpadded, undilated, ungrouped, with a bias."""
    plain_conv = conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
    if plain_conv and conv.bias is not None and fused_applies(x, conv.weight):
        return ConvReluPool.apply(x, conv.weight, conv.bias)
    return torch.max_pool2d(torch.relu(conv(x)), 2)
