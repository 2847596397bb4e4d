"""roi_pool / roi_align semantics the generic registry tests cannot express."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxops

def _temp_bytes(op, k, shape=(1, 8, 32, 32), out=7):
    """Temporary bytes of the compiled forward and forward+backward programs."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    b = jax.ShapeDtypeStruct((k, 5), jnp.float32)
    f = lambda x, b: op(x, b, out, 0.5)  # noqa: E731
    fwd = jax.jit(f).lower(x, b).compile().memory_analysis().temp_size_in_bytes
    g = jax.jit(jax.grad(lambda x, b: jnp.sum(f(x, b)))).lower(x, b).compile()
    return fwd, g.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("op", [jaxops.roi_pool, jaxops.roi_align])
def test_temp_memory_grows_per_roi_like_outputs_not_like_the_map(op):
    """A masked max / dense sampling over the whole map costs C*out_h*out_w*H*W per RoI
    (~32 GB at the benchmark's K=512, C=256, 50x50, 7x7). Here each extra RoI may cost
    at most a few C*out_h*W-sized rows (roi_align's first contraction), 1/8 of that."""
    n, c, h, w = shape = (1, 8, 32, 32)
    small, big = _temp_bytes(op, 32, shape), _temp_bytes(op, 64, shape)
    naive_per_roi = c * 7 * 7 * h * w * 4
    for mode, lo, hi in zip(("fwd", "fwd+bwd"), small, big):
        assert (hi - lo) / 32 < naive_per_roi / 8, (mode, lo, hi)
        assert hi < 64 * naive_per_roi / 8, (mode, hi)


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_checked_mode_rejects_batch_index_out_of_range(name):
    op = getattr(jaxops, name)
    x = jnp.ones((2, 1, 4, 4))
    bad = jnp.array([[0.0, 0, 0, 2, 2], [2.0, 0, 0, 2, 2]])
    with pytest.raises(checkify.JaxRuntimeError, match=rf"jaxops\.{name}: boxes batch index \(=2\.0\) is out of range"):
        jaxops.checked(lambda x, b: op(x, b, 2))(x, bad)
    ok = jnp.array([[1.9, 0, 0, 2, 2], [-0.5, 0, 0, 2, 2]])  # truncate to 1 and 0
    jaxops.checked(lambda x, b: op(x, b, 2))(x, ok)


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_unchecked_out_of_range_batch_index_gives_nan_and_no_gradient(name):
    op = getattr(jaxops, name)
    x = jnp.ones((2, 1, 4, 4))
    b = jnp.array([[0.0, 0, 0, 2, 2], [5.0, 0, 0, 2, 2], [-1.0, 0, 0, 2, 2]])
    out = jax.jit(lambda x: op(x, b, 2))(x)
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()
    g = jax.grad(lambda x: jnp.sum(jnp.nan_to_num(op(x, b, 2))))(x)
    assert float(jnp.sum(g[1])) == 0.0 and float(jnp.sum(g)) > 0


def test_roi_pool_round_half_away_from_zero():
    """2.5 rounds to 3 (C round); jnp.round would give 2 and shift the bin."""
    x = jnp.arange(36.0).reshape(1, 1, 6, 6)
    out = jaxops.roi_pool(x, jnp.array([[0, 2.5, 2.5, 2.5, 2.5]]), 1)
    assert float(out[0, 0, 0, 0]) == 3 * 6 + 3


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_second_order_and_forward_mode(name):
    op = getattr(jaxops, name)
    x = jax.random.normal(jax.random.key(0), (1, 2, 6, 6))
    b = jnp.array([[0, 0.5, 0.5, 4.5, 3.5], [0, 1, 1, 5, 5]])
    f = lambda x: jnp.sum(op(x, b, 2) ** 2)  # noqa: E731
    hvp = jax.jvp(jax.grad(f), (x,), (jnp.ones_like(x),))[1]
    assert np.isfinite(hvp).all()
    jac = jax.jacfwd(lambda x: op(x, b, 2))(x)
    assert jac.shape == (2, 2, 2, 2, 1, 2, 6, 6)


def test_roi_align_boxes_get_zero_gradient_like_torchvision():
    x = jax.random.normal(jax.random.key(1), (1, 1, 6, 6))
    b = jnp.array([[0, 0.3, 0.7, 4.2, 3.9]])
    g = jax.grad(lambda b: jnp.sum(jaxops.roi_align(x, b, 2)))(b)
    assert float(jnp.abs(g).sum()) == 0.0
