"""batch_norm and cross_entropy semantics the generic registry checks cannot express."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.experimental import checkify

import jaxops


def _bn64(x, w, b, eps=1e-5):
    """float64 NumPy reference of training-mode batch_norm (output only)."""
    x = np.asarray(x, np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(w, np.float64).reshape(shape) + np.asarray(
        b, np.float64
    ).reshape(shape)


# ---------------------------------------------------------------- batch_norm


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.float16])
def test_batch_norm_constant_channel_gives_exactly_bias(dtype):
    x = np.broadcast_to(
        np.array([0.1, -3.3, 7e3], np.float32)[None, :, None, None], (5, 3, 3, 7)
    ).astype(dtype)
    bias = jnp.array([1.5, -2.0, 0.3], dtype)
    out = jaxops.batch_norm(
        x, None, None, jnp.array([2.0, 3.0, 4.0], dtype), bias, training=True
    ).output
    np.testing.assert_array_equal(
        np.asarray(out), np.broadcast_to(np.asarray(bias)[None, :, None, None], x.shape)
    )


def test_batch_norm_large_offset_keeps_precision():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 3, 5, 5)) + 1e4).astype(np.float32)
    w, b = np.array([0.5, 1.0, 2.0], np.float32), np.array([0.1, 0.0, -1.0], np.float32)
    out, rm, rv = jaxops.batch_norm(
        x, np.zeros(3, np.float32), np.ones(3, np.float32), w, b, training=True, momentum=1.0
    )
    np.testing.assert_allclose(out, _bn64(x, w, b), rtol=0, atol=2e-6)  # torch's CPU kernel: ~1e-3
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(rm, x64.mean((0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(rv, x64.var((0, 2, 3), ddof=1), rtol=1e-5)
    # Gradient: d/dx of <g, y> against the float64 closed form.
    g = rng.standard_normal(x.shape).astype(np.float32)
    gx = jax.grad(
        lambda a: jnp.sum(jaxops.batch_norm(a, None, None, w, b, training=True).output * g)
    )(jnp.asarray(x))
    xh = _bn64(x, np.ones(3), np.zeros(3))
    axes = (0, 2, 3)
    gw = g * w.reshape(1, -1, 1, 1)
    inv = 1 / np.sqrt(x64.var(axes, keepdims=True) + 1e-5)
    ref = inv * (gw - gw.mean(axes, keepdims=True) - xh * (gw * xh).mean(axes, keepdims=True))
    np.testing.assert_allclose(gx, ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16])
def test_batch_norm_half_accumulates_in_float32(dtype):
    rng = np.random.default_rng(1)
    # 4096 values per channel around 100: a half-precision accumulator would be off by far
    # more than one ulp.
    x = (100 + rng.standard_normal((64, 2, 8, 8))).astype(dtype)
    out, rm, rv = jaxops.batch_norm(
        x, np.zeros(2, np.float32), np.ones(2, np.float32), training=True, momentum=1.0
    )
    assert out.dtype == dtype and rm.dtype == np.float32
    ref = _bn64(x.astype(np.float32), np.ones(2), np.zeros(2))
    np.testing.assert_allclose(
        np.asarray(out, np.float32), ref, rtol=1e-2, atol=1e-2
    )  # one half ulp
    np.testing.assert_allclose(rm, np.asarray(x, np.float64).mean((0, 2, 3)), rtol=1e-6)


def test_batch_norm_eval_returns_the_running_stats_and_none_stays_none():
    x, rm, rv = jnp.ones((2, 3)), jnp.arange(3.0), jnp.ones(3)
    res = jaxops.batch_norm(x, rm, rv)
    assert isinstance(res, jaxops.BatchNormOutput)
    np.testing.assert_array_equal(res.running_mean, rm)
    np.testing.assert_array_equal(res.running_var, rv)
    res = jaxops.batch_norm(x, None, None, training=True)
    assert res.running_mean is None and res.running_var is None


def test_batch_norm_traced_momentum_and_second_order():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((4, 3, 5)), jnp.float32)
    rm, rv = jnp.zeros(3), jnp.ones(3)
    f = jax.jit(lambda m: jaxops.batch_norm(x, rm, rv, training=True, momentum=m).running_mean)
    np.testing.assert_allclose(f(0.25), 0.25 * x.mean((0, 2)), rtol=1e-6, atol=1e-7)
    # Forward- and reverse-mode Jacobians agree, and the Hessian is symmetric (second order works).
    g = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    loss = lambda a: jnp.sum(jnp.sin(jaxops.batch_norm(a, None, None, training=True).output) * g)  # noqa: E731
    np.testing.assert_allclose(jax.jacfwd(loss)(x), jax.grad(loss)(x), rtol=1e-4, atol=1e-5)
    h = jax.hessian(loss)(x).reshape(60, 60)
    np.testing.assert_allclose(h, h.T, rtol=1e-3, atol=1e-4)


def test_batch_norm_axis_name_matches_the_global_batch():
    """vmap with an axis name has the same collective semantics as shard_map."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((8, 3, 4, 2)) * 3 + 5, jnp.float32)
    w, b = (
        jnp.asarray(rng.uniform(0.5, 1.5, 3), jnp.float32),
        jnp.asarray(rng.standard_normal(3), jnp.float32),
    )
    rm, rv = jnp.zeros(3), jnp.ones(3)
    g = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

    def glob(a, ww, bb):
        out = jaxops.batch_norm(a, rm, rv, ww, bb, training=True)
        return jnp.sum(out.output * g), out

    def sharded(a, ww, bb):
        def shard(xs, gs):
            out = jaxops.batch_norm(xs, rm, rv, ww, bb, training=True, axis_name="d")
            return jnp.sum(out.output * gs), out

        losses, out = jax.vmap(shard, axis_name="d")(
            a.reshape(4, 2, *a.shape[1:]), g.reshape(4, 2, *a.shape[1:])
        )
        return jnp.sum(losses), out

    (_, ref), ref_grads = jax.value_and_grad(glob, (0, 1, 2), has_aux=True)(x, w, b)
    (_, got), got_grads = jax.value_and_grad(sharded, (0, 1, 2), has_aux=True)(x, w, b)
    np.testing.assert_allclose(got.output.reshape(x.shape), ref.output, rtol=1e-5, atol=1e-5)
    for shard in range(4):  # every shard returns the global running statistics
        np.testing.assert_allclose(got.running_mean[shard], ref.running_mean, rtol=1e-6)
        np.testing.assert_allclose(got.running_var[shard], ref.running_var, rtol=1e-5)
    for a, e in zip(got_grads, ref_grads):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def test_batch_norm_axis_name_under_shard_map_and_sharded_jit():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, torch
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        import jaxops
        mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
        x = np.random.default_rng(0).standard_normal((8, 3, 5)).astype(np.float32) + 7
        rm, rv = jnp.zeros(3), jnp.ones(3)
        t_rm, t_rv = torch.zeros(3), torch.ones(3)
        ref = torch.nn.functional.batch_norm(torch.from_numpy(x), t_rm, t_rv, training=True).numpy()
        f = jax.shard_map(
            lambda a: tuple(jaxops.batch_norm(a, rm, rv, training=True, axis_name="data")),
            mesh=mesh, in_specs=P("data"), out_specs=(P("data"), P(), P()))
        out, m, v = jax.jit(f)(x)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m, t_rm.numpy(), rtol=1e-6)
        np.testing.assert_allclose(v, t_rv.numpy(), rtol=1e-5)
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        out2 = jax.jit(lambda a: jaxops.batch_norm(a, rm, rv, training=True).output)(xs)
        np.testing.assert_allclose(out2, ref, rtol=1e-5, atol=1e-5)
        print("ok")
        """
    )
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_batch_norm_unbound_axis_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"jaxops\.batch_norm: axis_name \(='nope'\) is not bound"):
        jaxops.batch_norm(jnp.ones((4, 2)), None, None, training=True, axis_name="nope")


# ---------------------------------------------------------------- cross_entropy


def test_cross_entropy_out_of_range_index_checked_and_unchecked():
    x, t = jnp.zeros((3, 4)), jnp.array([0, 7, 255])
    checked = jaxops.checked(lambda a, b: jaxops.cross_entropy(a, b, ignore_index=255))
    with pytest.raises(
        checkify.JaxRuntimeError,
        match=r"jaxops\.cross_entropy: target holds class index 7, out of range for 4 classes",
    ):
        checked(x, t)
    with pytest.raises(checkify.JaxRuntimeError, match=r"class index -1"):
        jaxops.checked(jax.jit(jaxops.cross_entropy))(x, jnp.array([0, -1, 2]))
    assert np.isfinite(checked(x, jnp.array([0, 3, 255])))  # ignored and in-range targets pass
    # Unchecked: NaN loss for the element, NaN gradient for its logits, never a clamped class.
    loss = jaxops.cross_entropy(x, t, ignore_index=255, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), [False, True, False])
    g = jax.grad(lambda a: jaxops.cross_entropy(a, t, ignore_index=255, reduction="sum"))(x)
    np.testing.assert_array_equal(np.isnan(g).all(1), [False, True, False])
    assert np.isnan(jaxops.cross_entropy(x, t, ignore_index=255))


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient():
    x, t = jnp.ones((3, 4)), jnp.full((3,), -100)
    for ls in (0.0, 0.2):
        assert np.isnan(jaxops.cross_entropy(x, t, label_smoothing=ls))
        np.testing.assert_array_equal(
            jax.grad(lambda a, ls=ls: jaxops.cross_entropy(a, t, label_smoothing=ls))(x), 0.0
        )


def test_cross_entropy_common_offset_and_huge_logits_keep_precision():
    rng = np.random.default_rng(4)
    x = (1e4 + 3 * rng.standard_normal((16, 100))).astype(np.float32)
    t = rng.integers(0, 100, 16)
    x64 = x.astype(np.float64)
    logp = x64 - x64.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    ref = 0.9 * -logp[np.arange(16), t] - 0.1 / 100 * logp.sum(1)
    got = jaxops.cross_entropy(x, t, label_smoothing=0.1, reduction="none")
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)


def test_cross_entropy_second_order():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((1, 5)), jnp.float32)
    for target in (
        jnp.array([2]),
        jax.nn.softmax(jnp.asarray(rng.standard_normal((1, 5)), jnp.float32)),
    ):

        def f(a, target=target):
            return jaxops.cross_entropy(a, target, label_smoothing=0.3)

        h = jax.hessian(f)(x).reshape(5, 5)
        p = jax.nn.softmax(x[0])
        np.testing.assert_allclose(h, jnp.diag(p) - jnp.outer(p, p), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jax.jacfwd(f)(x), jax.grad(f)(x), rtol=1e-5, atol=1e-7)
