"""Pooling semantics the generic registry tests cannot express: second order, forward mode,
the gradient's construction, checked-mode errors, unchecked behaviour, half precision, export."""

from __future__ import annotations

import functools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.experimental import checkify

import jaxops
from jaxops.testing import REGISTRY, _common, parity

RNG = np.random.default_rng(0)
_x = functools.partial(_common.randn, RNG)  # float32, from the module's generator


MAX_CONFIGS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
]


def test_max_pool2d_gradient_avoids_select_and_scatter():
    # XLA:CPU's select_and_scatter is a scalar loop that cannot do dilation and routes
    # NaN windows elsewhere than torch; the gradient must be the gather's scatter-add.
    f = jax.grad(lambda x: jaxops.max_pool2d(x, 3, 2, 1).sum())
    hlo = jax.jit(f).lower(jnp.zeros((1, 2, 8, 8))).as_text()
    assert "select_and_scatter" not in hlo and "select-and-scatter" not in hlo


@pytest.mark.parametrize("kwargs", MAX_CONFIGS)
def test_max_pool2d_second_order_matches_torch(kwargs):
    """Hessian-vector product of sum(w * pool(x)^2) against torch's double backward."""
    x, v = _x(2, 2, 6, 7), _x(2, 2, 6, 7)
    w = _x(*F.max_pool2d(torch.from_numpy(x), **kwargs).shape)

    def f(a):
        return jnp.sum(w * jaxops.max_pool2d(a, **kwargs) ** 2)

    hvp = jax.jvp(jax.grad(f), (jnp.asarray(x),), (jnp.asarray(v),))[1]
    tx = torch.from_numpy(x).requires_grad_()
    (g,) = torch.autograd.grad((torch.from_numpy(w) * F.max_pool2d(tx, **kwargs) ** 2).sum(), tx, create_graph=True)
    (t_hvp,) = torch.autograd.grad(g, tx, torch.from_numpy(v))
    np.testing.assert_allclose(np.asarray(hvp), t_hvp.numpy(), rtol=1e-5, atol=1e-6)


def test_avg_pool2d_second_order_matches_torch():
    kwargs = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    x, v = _x(1, 2, 7, 6), _x(1, 2, 7, 6)

    def f(a):
        return jnp.sum(jnp.sin(jaxops.avg_pool2d(a, **kwargs)))

    hvp = jax.jvp(jax.grad(f), (jnp.asarray(x),), (jnp.asarray(v),))[1]
    tx = torch.from_numpy(x).requires_grad_()
    (g,) = torch.autograd.grad(torch.sin(F.avg_pool2d(tx, **kwargs)).sum(), tx, create_graph=True)
    (t_hvp,) = torch.autograd.grad(g, tx, torch.from_numpy(v))
    np.testing.assert_allclose(np.asarray(hvp), t_hvp.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "fn,shape",
    [
        (lambda x: jaxops.max_pool2d(x, 2, 1, 1, dilation=2), (1, 1, 4, 5)),
        (lambda x: jaxops.max_pool2d(x, 3, 2, 1, return_indices=True)[0], (1, 1, 4, 5)),
        (lambda x: jaxops.avg_pool2d(x, 2, 1, 1, ceil_mode=True, count_include_pad=False), (1, 1, 4, 5)),
        (lambda x: jaxops.max_unpool2d(x, jnp.array([[[[0, 5], [5, 15]]]]), 2), (1, 1, 2, 2)),
    ],
    ids=["max_pool2d dilated", "max_pool2d indices", "avg_pool2d", "max_unpool2d repeats"],
)
def test_jacfwd_equals_jacrev(fn, shape):
    x = jnp.asarray(np.round(_x(*shape)))  # rounded: ties inside windows
    np.testing.assert_array_equal(jax.jacfwd(fn)(x), jax.jacrev(fn)(x))


def test_max_pool2d_nan_window_gradient_goes_to_the_last_nan():
    x = np.array([[[[1.0, np.nan, 5.0, np.nan, 2.0]]]], np.float32)
    out, vjp = jax.vjp(lambda a: jaxops.max_pool2d(a, (1, 5)), jnp.asarray(x))
    assert np.isnan(out).all()
    np.testing.assert_array_equal(vjp(jnp.ones_like(out))[0], [[[[0, 0, 0, 1, 0]]]])


def _unpool_inputs():
    y = jnp.asarray(_x(1, 2, 2, 2))
    idx = jnp.array([[[[0, 3], [9, 15]], [[1, 2], [3, 4]]]])
    return y, idx


def test_max_unpool2d_checked_raises_on_out_of_range_index():
    y, idx = _unpool_inputs()
    bad = idx.at[0, 1, 1, 0].set(16)
    # checked() around a jitted function (jit(checked(f)) cannot throw from inside the trace).
    safe = jaxops.checked(jax.jit(lambda a, i: jaxops.max_unpool2d(a, i, 2)))
    np.testing.assert_array_equal(safe(y, idx), jaxops.max_unpool2d(y, idx, 2))
    with pytest.raises(checkify.JaxRuntimeError, match=r"jaxops\.max_unpool2d: index 16 is out of range for output planes of size 4x4"):
        safe(y, bad)
    with pytest.raises(checkify.JaxRuntimeError, match=r"index -1 is out of range"):
        jaxops.checked(jaxops.max_unpool2d)(y, idx.at[0, 0, 0, 0].set(-1), 2)


def test_max_unpool2d_unchecked_drops_out_of_range_indices():
    y, idx = _unpool_inputs()
    bad = idx.at[0, 0, 0, 0].set(-1).at[0, 1, 1, 1].set(99)
    f = jax.jit(lambda a: jaxops.max_unpool2d(a, bad, 2))
    out = f(y)
    expected = jaxops.max_unpool2d(y, idx, 2).at[0, 0, 0, 0].set(0).at[0, 1, 1, 0].set(0)
    np.testing.assert_array_equal(out, expected)  # no wrap-around of -1, nothing written for 99
    g = jax.grad(lambda a: jnp.sum(f(a) * jnp.arange(1.0, 33.0).reshape(1, 2, 4, 4)))(y)
    assert g[0, 0, 0, 0] == 0 and g[0, 1, 1, 1] == 0 and g[0, 0, 1, 1] == 16


def test_max_pool2d_indices_round_trip_under_jit_and_vmap():
    x = jnp.asarray(_x(3, 2, 2, 6, 7))

    def roundtrip(a):
        y, i = jaxops.max_pool2d(a, 3, 2, 1, return_indices=True)
        return jaxops.max_unpool2d(y, i, 3, 2, 1, output_size=a.shape[-2:])

    batched = jax.jit(jax.vmap(roundtrip))(x)
    looped = jnp.stack([roundtrip(a) for a in x])
    np.testing.assert_array_equal(batched, looped)
    kept = batched != 0
    np.testing.assert_array_equal(batched[kept], x[kept])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_close_to_float32(dtype):
    x = _x(2, 3, 9, 8)
    xh = jnp.asarray(x).astype(dtype)
    x32 = xh.astype(jnp.float32)
    tol = 1e-2 if dtype == jnp.bfloat16 else 1e-3
    mp = jaxops.max_pool2d(xh, 3, 2, 1)
    assert mp.dtype == dtype
    np.testing.assert_array_equal(mp.astype(jnp.float32), jaxops.max_pool2d(x32, 3, 2, 1))
    ap = jaxops.avg_pool2d(xh, 3, 1, 1, count_include_pad=False)
    assert ap.dtype == dtype
    np.testing.assert_allclose(ap.astype(jnp.float32), jaxops.avg_pool2d(x32, 3, 1, 1, count_include_pad=False),
                               rtol=tol, atol=tol)
    g = jax.grad(lambda a: jaxops.avg_pool2d(a, 3, 2, 1).astype(jnp.float32).sum())(xh)
    g32 = jax.grad(lambda a: jaxops.avg_pool2d(a, 3, 2, 1).sum())(x32)
    np.testing.assert_allclose(g.astype(jnp.float32), g32, rtol=tol, atol=tol)


def test_export_with_symbolic_batch():
    f = jax.jit(lambda a: jax.value_and_grad(lambda b: jaxops.max_pool2d(b, 3, 2, 1).sum())(a))
    (n,) = jax.export.symbolic_shape("n")
    exp = jax.export.export(f)(jax.ShapeDtypeStruct((n, 2, 7, 7), jnp.float32))
    x = jnp.asarray(_x(3, 2, 7, 7))
    out = exp.call(x)
    np.testing.assert_allclose(out[0], f(x)[0], rtol=1e-6)
    np.testing.assert_array_equal(out[1], f(x)[1])


@pytest.mark.parametrize("name", ["max_pool2d", "max_unpool2d", "avg_pool2d"])
def test_strategy_draws_valid_samples_matching_torch(name):
    info = REGISTRY[name]

    @hypothesis.settings(max_examples=8, deadline=None, derandomize=True)
    @hypothesis.given(info.strategy())
    def check(sample):
        comparisons = parity.check_forward(info, sample)
        assert all(c.ok for c in comparisons), (sample, [c.message for c in comparisons])

    check()


@pytest.mark.parametrize("kwargs", MAX_CONFIGS + [dict(kernel_size=2, dilation=3, padding=1)])
def test_argmax_paths_agree(kwargs):
    """The fused (small windows) and separable (large windows) argmax scans pick the same element."""
    from jaxops import pooling

    x = np.round(_x(2, 2, 7, 8))
    x[0, 0, ::3, ::2] = np.nan
    x[1, 1] = -np.inf
    x = jnp.asarray(x)
    cfg = pooling._pool_config("max_pool2d", x, kwargs["kernel_size"], kwargs.get("stride"),
                               kwargs.get("padding", 0), kwargs.get("dilation", 1), kwargs.get("ceil_mode", False))
    v1, i1 = pooling._argmax_window(x, cfg)
    v2, i2 = pooling._argmax_separable(x, cfg)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(v1, v2)
