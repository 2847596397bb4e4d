"""Pooling semantics the generic registry tests cannot express: second order, forward mode,
the gradient's construction, checked-mode errors, unchecked behaviour, half precision, export."""

from __future__ import annotations

import contextlib
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
from jaxops.testing import REGISTRY, _common, lowering, parity, portable

RNG = np.random.default_rng(0)
_x = functools.partial(_common.randn, RNG)  # float32, from the module's generator


MAX_CONFIGS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
]


def test_max_pool2d_cpu_gradient_is_a_scatter_add():
    # The CPU branch's choice: XLA:CPU's select_and_scatter is a scalar loop that cannot do
    # dilation and routes NaN windows elsewhere than torch; the gradient is the gather's
    # scatter-add, one sequential loop.
    f = jax.grad(lambda x: jaxops.max_pool2d(x, 3, 2, 1).sum())
    counts = lowering.op_counts(lowering.lowered_text(f, jnp.zeros((1, 2, 8, 8)), platform="cpu"))
    assert counts["select_and_scatter"] == 0 and counts["scatter"] == 1, counts


# Tie-heavy configurations for the two formulations: every element of a window of small
# integers is often its maximum, overlapping windows share their argmax, NaNs and -inf
# sprinkled in. The last three take the separable portable form (large kernels whose
# windows share no position along one axis); the 5x5 stride-1 one the full form.
FORMULATION_CONFIGS = MAX_CONFIGS + [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=2, dilation=3, padding=1, stride=1),
    dict(kernel_size=5, stride=1, padding=2),
    dict(kernel_size=(4, 5), stride=(1, 5), padding=(2, 1), ceil_mode=True),
    dict(kernel_size=(3, 4), stride=(3, 1), padding=(1, 2), dilation=(1, 2)),
    dict(kernel_size=(7, 8)),
]


def _tie_heavy(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(np.float32)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=(2, max(1, flat.size // 20)), replace=False)
    flat[picks[0]], flat[picks[1]] = np.nan, -np.inf
    return jnp.asarray(x)


def _grad_bits(kwargs, return_indices, x, cot):
    def f(a):
        out = jaxops.max_pool2d(a, **kwargs, return_indices=return_indices)
        return out[0] if return_indices else out

    return np.asarray(jax.jit(lambda a: jax.vjp(f, a)[1](cot)[0])(x)).view(np.uint32)


@pytest.mark.parametrize("return_indices", [False, True])
@pytest.mark.parametrize("kwargs", FORMULATION_CONFIGS, ids=str)
def test_max_pool2d_portable_gradient_is_deterministic_and_equals_the_cpu_one(
    kwargs, return_indices
):
    """Both formulations pick torch's element and add shared cotangents in torch's order:
    their gradients are identical bit for bit, and the portable one is the same on every run."""
    x = _tie_heavy((2, 3, 9, 8))
    out_shape = jax.eval_shape(lambda a: jaxops.max_pool2d(a, **kwargs), x).shape
    cot = jnp.asarray(np.random.default_rng(1).standard_normal(out_shape).astype(np.float32))
    cpu = _grad_bits(kwargs, return_indices, x, cot)
    with portable():
        first = _grad_bits(kwargs, return_indices, x, cot)
        again = _grad_bits(kwargs, return_indices, x, cot)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, cpu)
    tx = torch.from_numpy(np.array(x)).requires_grad_()
    (expected,) = torch.autograd.grad(
        F.max_pool2d(tx, **kwargs), tx, torch.from_numpy(np.array(cot))
    )
    np.testing.assert_array_equal(first, expected.numpy().view(np.uint32))


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("return_indices", [False, True])
@pytest.mark.parametrize("kwargs", FORMULATION_CONFIGS, ids=str)
def test_max_pool2d_portable_gradient_is_strided_pads(kwargs, return_indices, platform):
    """No scatter, no select_and_scatter, no loop: the transpose of strided slices, pads."""

    def loss(a):
        out = jaxops.max_pool2d(a, **kwargs, return_indices=return_indices)
        return (out[0] if return_indices else out).sum()

    text = lowering.lowered_text(jax.grad(loss), jnp.zeros((2, 3, 9, 8)), platform=platform)
    counts = lowering.op_counts(text)
    assert counts["scatter"] == counts["select_and_scatter"] == counts["while"] == 0, counts
    assert counts["pad"] >= 1 and counts["gather"] == 0, counts


def _formulation(name):
    """The CPU branch (what this machine runs by default) or the portable one (GPU, TPU)."""
    return portable() if name == "portable" else contextlib.nullcontext()


FORMULATIONS = ["cpu", "portable"]


@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("kwargs", MAX_CONFIGS)
def test_max_pool2d_second_order_matches_torch(kwargs, formulation):
    """Hessian-vector product of sum(w * pool(x)^2) against torch's double backward."""
    x, v = _x(2, 2, 6, 7), _x(2, 2, 6, 7)
    w = _x(*F.max_pool2d(torch.from_numpy(x), **kwargs).shape)

    def f(a):
        return jnp.sum(w * jaxops.max_pool2d(a, **kwargs) ** 2)

    with _formulation(formulation):
        hvp = jax.jvp(jax.grad(f), (jnp.asarray(x),), (jnp.asarray(v),))[1]
    tx = torch.from_numpy(x).requires_grad_()
    (g,) = torch.autograd.grad(
        (torch.from_numpy(w) * F.max_pool2d(tx, **kwargs) ** 2).sum(), tx, create_graph=True
    )
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
        (
            lambda x: jaxops.avg_pool2d(x, 2, 1, 1, ceil_mode=True, count_include_pad=False),
            (1, 1, 4, 5),
        ),
        (lambda x: jaxops.max_unpool2d(x, jnp.array([[[[0, 5], [5, 15]]]]), 2), (1, 1, 2, 2)),
    ],
    ids=["max_pool2d dilated", "max_pool2d indices", "avg_pool2d", "max_unpool2d repeats"],
)
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_jacfwd_equals_jacrev(fn, shape, formulation):
    x = jnp.asarray(np.round(_x(*shape)))  # rounded: ties inside windows
    with _formulation(formulation):
        np.testing.assert_array_equal(jax.jacfwd(fn)(x), jax.jacrev(fn)(x))


@pytest.mark.parametrize("return_indices", [False, True])
@pytest.mark.parametrize(
    "kwargs", MAX_CONFIGS + [dict(kernel_size=(4, 5), stride=(1, 5), padding=(2, 1))]
)
def test_max_pool2d_hessian_is_the_same_on_both_formulations(kwargs, return_indices):
    """jax.hessian (forward over reverse) through either custom_jvp rule: the selected
    element's second derivative, the same on both, and torch's Hessian-vector products."""
    x = jnp.asarray(_x(1, 2, 5, 6))
    w = jnp.asarray(_x(*jax.eval_shape(lambda a: jaxops.max_pool2d(a, **kwargs), x).shape))

    def f(a):
        out = jaxops.max_pool2d(a, **kwargs, return_indices=return_indices)
        return jnp.sum(w * jnp.sin(out[0] if return_indices else out))

    hessians = {}
    for name in FORMULATIONS:
        with _formulation(name):
            hessians[name] = np.asarray(jax.jit(jax.hessian(f))(x)).reshape(x.size, x.size)
    np.testing.assert_array_equal(hessians["portable"], hessians["cpu"])
    tx = torch.from_numpy(np.array(x)).requires_grad_()
    (g,) = torch.autograd.grad(
        (torch.from_numpy(np.array(w)) * torch.sin(F.max_pool2d(tx, **kwargs))).sum(),
        tx,
        create_graph=True,
    )
    v = _x(*x.shape)
    (t_hvp,) = torch.autograd.grad(g, tx, torch.from_numpy(v))
    np.testing.assert_allclose(
        hessians["portable"] @ v.reshape(-1), t_hvp.numpy().reshape(-1), rtol=1e-5, atol=1e-6
    )


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
    with pytest.raises(
        checkify.JaxRuntimeError,
        match=r"jaxops\.max_unpool2d: index 16 is out of range for output planes of size 4x4",
    ):
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
    np.testing.assert_allclose(
        ap.astype(jnp.float32),
        jaxops.avg_pool2d(x32, 3, 1, 1, count_include_pad=False),
        rtol=tol,
        atol=tol,
    )
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


def _cfg(x, kwargs):
    from jaxops import pooling

    return pooling._pool_config(
        "max_pool2d",
        x,
        kwargs["kernel_size"],
        kwargs.get("stride"),
        kwargs.get("padding", 0),
        kwargs.get("dilation", 1),
        kwargs.get("ceil_mode", False),
    )


@pytest.mark.parametrize("kwargs", MAX_CONFIGS + [dict(kernel_size=2, dilation=3, padding=1)])
def test_argmax_paths_agree(kwargs):
    """The CPU branch's fused (small windows) and separable (large windows) argmax scans,
    and the portable formulation's full and separable tap scans, pick the same element."""
    from jaxops import pooling
    from jaxops._cpu import pooling as cpu

    x = np.round(_x(2, 2, 7, 8))
    x[0, 0, ::3, ::2] = np.nan
    x[1, 1] = -np.inf
    x = jnp.asarray(x)
    cfg = _cfg(x, kwargs)
    v1, i1 = cpu._argmax_window(x, cfg)
    v2, i2 = cpu._argmax_separable(x, cfg)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(v1, v2)
    for separable in (False, True):
        best, tap_h, row_tap = pooling._scan_taps(x, cfg, separable)
        np.testing.assert_array_equal(pooling._flat_index(cfg, tap_h, row_tap), i1)
        np.testing.assert_array_equal(best, v1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=(4, 5), stride=(1, 5), padding=(2, 1)),
        dict(kernel_size=(5, 6)),
        dict(kernel_size=4, stride=4, padding=2),
    ],
)
def test_portable_separable_gradient_equals_the_full_one(kwargs):
    """Where the windows share no position along one axis, the separable form's two-level sum
    of cotangents is torch's row-major one: the same bits as the full form."""
    from jaxops import pooling

    x = _tie_heavy((2, 2, 9, 8))
    cfg = _cfg(x, kwargs)
    assert pooling._separable(cfg)
    cot = jnp.asarray(_x(2, 2, *cfg.out_hw))

    def grad(separable):
        @jax.jit
        def vjp(a, ct):
            taps = pooling._scan_taps(a, cfg, separable)[1:]
            return jax.linear_transpose(lambda t: pooling._tangent(t, cfg, *taps), a)(ct)[0]

        return np.asarray(vjp(x, cot)).view(np.uint32)

    np.testing.assert_array_equal(grad(True), grad(False))


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_max_pool2d_window_in_the_padding_has_no_gradient(formulation):
    """Width 2, dilation 3, padding 1: every window's taps are columns -1 and 2, both padding.
    torch's start index row * 2 + 2 is the next row's first element: it must get nothing."""
    x = jnp.asarray(_x(1, 2, 3, 2))
    kwargs = dict(kernel_size=(2, 2), stride=1, padding=(1, 1), dilation=(1, 3))
    with _formulation(formulation):
        values, idx = jaxops.max_pool2d(x, **kwargs, return_indices=True)
        g = jax.grad(lambda a: jaxops.max_pool2d(a, **kwargs).sum())(x)
    t_values, t_idx = F.max_pool2d(torch.from_numpy(np.array(x)), **kwargs, return_indices=True)
    np.testing.assert_array_equal(values, t_values.numpy())
    np.testing.assert_array_equal(idx, t_idx.numpy())
    np.testing.assert_array_equal(g, np.zeros_like(x))
