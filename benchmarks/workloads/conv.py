"""conv2d (dense 3x3, depthwise 3x3) and conv_transpose2d (k4 s2 p1), plus a matmul peak reference.

The ``lax`` column is the bare primitive on the public NCHW/OIHW layout:
``lax.conv_general_dilated`` for conv2d, ``lax.conv_transpose`` (what a plain
vjp of a strided conv runs: an lhs-dilated convolution) for conv_transpose2d.
The ``matmul_peak`` case times a square float32 matmul, the machine's
practical GFLOP/s ceiling to read the convolutions' GFLOP/s against.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxops

from harness import Case, fwd_and_bwd_cases, jax_impl, to_torch, torch_fwd

NCHW = ("NCHW", "OIHW", "NCHW")
# float32-exact contractions, as jaxops' default and torch with TF32 off (XLA:CPU ignores it).
HIGHEST = lax.Precision.HIGHEST


def _lax_conv(x, w, padding, groups):
    return lax.conv_general_dilated(
        x,
        w,
        (1, 1),
        [(padding, padding)] * 2,
        dimension_numbers=NCHW,
        feature_group_count=groups,
        precision=HIGHEST,
    )


def _lax_conv_transpose(x, w):
    # torch's (C_in, C_out, kH, kW) weight is the forward conv's OIHW kernel: transpose_kernel=True.
    return lax.conv_transpose(
        x,
        w,
        (2, 2),
        [(2, 2), (2, 2)],
        dimension_numbers=NCHW,
        transpose_kernel=True,
        precision=HIGHEST,
    )


def _conv_cases(name, x_shape, w_shape, padding, groups, flops):
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    jx, jw, jb = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
    tx, tw, tb = to_torch(x), to_torch(w), to_torch(b)

    def ours(a, k, c):
        return jaxops.conv2d(a, k, c, padding=padding, groups=groups)

    def theirs(a, k, c):
        return F.conv2d(a, k, c, padding=padding, groups=groups)

    def bare(a, k, c):
        return _lax_conv(a, k, padding, groups) + c[:, None, None]

    workload = f"{name} {x_shape}->{w_shape[0]}"
    return fwd_and_bwd_cases(
        "conv2d", workload, ours, theirs, bare, (jx, jw, jb), (tx, tw, tb), (0, 1, 2), flops
    )


def _transpose_cases(x_shape, c_out):
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    n, c_in, h, w_ = x_shape
    x = rng.standard_normal(x_shape, np.float32)
    w = (rng.standard_normal((c_in, c_out, 4, 4)) / np.sqrt(c_in * 16)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    jx, jw, jb = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
    tx, tw, tb = to_torch(x), to_torch(w), to_torch(b)
    flops = 2.0 * n * c_in * c_out * 16 * h * w_

    def ours(a, k, c):
        return jaxops.conv_transpose2d(a, k, c, stride=2, padding=1)

    def theirs(a, k, c):
        return F.conv_transpose2d(a, k, c, stride=2, padding=1)

    def bare(a, k, c):
        return _lax_conv_transpose(a, k) + c[:, None, None]

    workload = f"k4 s2 p1 {x_shape}->{c_out}"
    return fwd_and_bwd_cases(
        "conv_transpose2d",
        workload,
        ours,
        theirs,
        bare,
        (jx, jw, jb),
        (tx, tw, tb),
        (0, 1, 2),
        flops,
    )


def _matmul_peak(n):
    import torch

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    ta, tb = to_torch(a), to_torch(b)
    return Case(
        "matmul_peak",
        f"({n}, {n}) @ ({n}, {n}) float32",
        "fwd",
        lambda: {
            # XLA's dot: the GFLOP/s ceiling for our convs.
            "jaxops": jax_impl(lambda a, b: jnp.matmul(a, b, precision=HIGHEST), ja, jb),
            "torch": torch_fwd(torch.mm, ta, tb),
        },
        flops=2.0 * n**3,
    )


def cases(quick: bool) -> list[Case]:
    if quick:
        dense, depthwise, transposed = (8, 64, 28, 28), (8, 128, 28, 28), (4, 128, 14, 14)
    else:
        dense, depthwise, transposed = (32, 64, 56, 56), (32, 128, 56, 56), (16, 128, 28, 28)
    hw = dense[2] * dense[3]
    return [
        _matmul_peak(1024 if quick else 2048),
        *_conv_cases(
            "dense 3x3 p1", dense, (64, 64, 3, 3), 1, 1, 2.0 * dense[0] * 64 * 64 * 9 * hw
        ),
        *_conv_cases(
            "depthwise 3x3 p1", depthwise, (128, 1, 3, 3), 1, 128, 2.0 * depthwise[0] * 128 * 9 * hw
        ),
        *_transpose_cases(transposed, 64),
    ]
