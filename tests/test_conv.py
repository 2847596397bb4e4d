"""conv2d / conv_transpose2d semantics the generic registry tests cannot express."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxops
from jaxops.testing import _common, lowering

RNG = np.random.default_rng(0)
randn = functools.partial(_common.randn, RNG)  # float32, from the module's generator


def _lhs_dilations(fn, *args, platform="cpu"):
    """The lhs dilation of every convolution XLA compiles for ``platform`` (one branch per
    choice)."""
    text = lowering.lowered_text(fn, *args, platform=platform)
    return [
        tuple(map(int, d.split(", "))) for d in re.findall(r"lhs_dilate = \[(\d+, \d+)\]", text)
    ]


CONFIGS = [  # stride, padding, output_padding, dilation, groups
    ((2, 2), (1, 1), (1, 1), (1, 1), 1),
    ((3, 2), (0, 1), (2, 0), (1, 2), 2),
    ((1, 1), (1, 0), (1, 0), (2, 1), 1),
    ((2, 1), (1, 1), (0, 0), (3, 1), 4),  # depthwise forward conv
]


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups", CONFIGS)
def test_conv_transpose2d_is_vjp_of_conv2d(stride, padding, output_padding, dilation, groups):
    """The definition: the input-vjp of conv2d (output_padding only adds rows the conv never
    reads)."""
    x, w = randn(2, 4, 5, 6), randn(4, 8 // groups, 3, 2)
    y = jaxops.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
    z = jnp.zeros(y.shape)
    conv_out, vjp = jax.vjp(
        lambda z: jaxops.conv2d(z, w, None, stride, padding, dilation, groups), z
    )
    # With output_padding >= stride (< dilation) the symmetric conv has output_padding rows
    # more than x: they meet only the output_padding rows, and a zero cotangent there gives the
    # same vjp.
    extra = [(0, 0), (0, 0)] + [(0, c - s) for c, s in zip(conv_out.shape[2:], x.shape[2:])]
    grad = vjp(jnp.pad(jnp.asarray(x), extra))[0]
    np.testing.assert_allclose(y, grad, rtol=1e-6, atol=1e-6)


def test_strided_convs_never_dilate_the_input_on_cpu():
    """The CPU formulation's stride-phase decomposition: XLA:CPU never runs an lhs-dilated
    convolution (a slow loop multiplying inserted zeros). The portable formulation does, on
    purpose: that is cuDNN's backward-data convolution."""
    x, w = jnp.asarray(randn(2, 4, 9, 8)), jnp.asarray(randn(6, 4, 3, 4))
    xt, wt = jnp.asarray(randn(2, 4, 5, 6)), jnp.asarray(randn(4, 3, 4, 4))

    def conv_loss(x, w):
        return jnp.sum(jaxops.conv2d(x, w, stride=2, padding=1) ** 2)

    def transpose_loss(x, w):
        return jnp.sum(jaxops.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1) ** 2)

    seen = 0
    for fn, args in ((conv_loss, (x, w)), (transpose_loss, (xt, wt))):
        for traced in (fn, jax.grad(fn, argnums=(0, 1)), jax.hessian(fn, argnums=1)):
            dilations = _lhs_dilations(traced, *args)
            assert all(d == (1, 1) for d in dilations), dilations
            seen += len(dilations)
    assert seen  # the input gradients are convolutions: the scan above did find them
    assert any(d != (1, 1) for d in _lhs_dilations(jax.grad(conv_loss), x, w, platform="cuda"))


@pytest.mark.parametrize("transposed", [False, True])
def test_second_order_matches_torch(transposed):
    """d/dw <d/dx f(x, w), v> against torch's double backward (create_graph=True)."""
    if transposed:
        x, w, kwargs = (
            randn(2, 4, 5, 6),
            randn(4, 3, 3, 3),
            {"stride": 2, "padding": 1, "output_padding": 1},
        )
        jf, tf = jaxops.conv_transpose2d, F.conv_transpose2d
    else:
        x, w, kwargs = (
            randn(2, 4, 7, 6),
            randn(6, 2, 3, 2),
            {"stride": (2, 1), "padding": 1, "groups": 2},
        )
        jf, tf = jaxops.conv2d, F.conv2d
    v = randn(*x.shape)

    def inner(w_):
        gx = jax.grad(lambda x_: jnp.sum(jnp.tanh(jf(x_, w_, **kwargs))))(jnp.asarray(x))
        return jnp.sum(gx * v)

    ours = jax.grad(inner)(jnp.asarray(w))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (gx,) = torch.autograd.grad(torch.tanh(tf(tx, tw, **kwargs)).sum(), tx, create_graph=True)
    (theirs,) = torch.autograd.grad((gx * torch.tensor(v)).sum(), tw)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_forward_mode_over_all_arguments(op):
    """jacfwd (forward mode) agrees with jacrev w.r.t. input, weight and bias; hessian runs."""
    if op == "conv2d":
        args = (randn(1, 4, 5, 6), randn(4, 2, 3, 2), randn(4))

        def fn(x, w, b):
            return jaxops.conv2d(x, w, b, stride=2, padding=1, groups=2)
    else:
        args = (randn(1, 4, 3, 4), randn(4, 1, 3, 3), randn(2))

        def fn(x, w, b):
            return jaxops.conv_transpose2d(x, w, b, stride=2, groups=2, output_padding=1)

    args = tuple(jnp.asarray(a) for a in args)
    fwd = jax.jacfwd(fn, argnums=(0, 1, 2))(*args)
    rev = jax.jacrev(fn, argnums=(0, 1, 2))(*args)
    for a, b in zip(fwd, rev):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    def loss(*a):
        return jnp.sum(jnp.sin(fn(*a)))

    # Jitted: eager jacrev(jacrev(.)) of the depthwise path crashed XLA:CPU's per-op compile
    # in this jax build (a segfault outside jaxops; the jitted program is fine).
    h_fwd = jax.jit(jax.hessian(loss, argnums=1))(*args)
    h_rev = jax.jit(jax.jacrev(jax.jacrev(loss, argnums=1), argnums=1))(*args)
    np.testing.assert_allclose(h_fwd, h_rev, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k,d", [((3, 3), (1, 1)), ((4, 2), (1, 3)), ((1, 5), (2, 2))])
def test_same_padding_keeps_the_size(k, d):
    x = jnp.asarray(randn(1, 2, 7, 6))
    assert jaxops.conv2d(x, randn(3, 2, *k), padding="same", dilation=d).shape == (1, 3, 7, 6)


def test_output_size_equals_the_output_padding_it_derives():
    x, w = randn(2, 3, 5, 6), randn(3, 2, 3, 3)
    explicit = jaxops.conv_transpose2d(x, w, stride=(2, 3), output_padding=(1, 2))
    derived = jaxops.conv_transpose2d(x, w, stride=(2, 3), output_size=explicit.shape[2:])
    np.testing.assert_array_equal(explicit, derived)


def test_dtypes():
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3)
    for dtype in (jnp.float16, jnp.bfloat16):
        assert jaxops.conv2d(x.astype(dtype), w.astype(dtype)).dtype == dtype
        assert jaxops.conv_transpose2d(x.astype(dtype), w.astype(dtype)[:2]).dtype == dtype
    # Mixed floating dtypes promote (torch raises).
    assert jaxops.conv2d(x.astype(jnp.float16), w).dtype == jnp.float32


def test_jit_with_static_arguments_and_export():
    x, w = jnp.asarray(randn(2, 3, 8, 8)), jnp.asarray(randn(4, 3, 3, 3))
    fn = jax.jit(
        lambda x, w: jaxops.conv2d(x, w, stride=2, padding="valid", padding_mode="reflect")
    )
    exported = jax.export.export(fn)(x, w)
    np.testing.assert_allclose(exported.call(x, w), fn(x, w), rtol=1e-6)
