"""Generic JAX-transformation checks of every registered op: jit, vmap, jvp/vjp consistency."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cases import sample_cases
from jaxops.testing import is_floating, parity


def _array_refs(sample):
    return [i for i, a in enumerate(sample.args) if isinstance(a, np.ndarray)] + [
        k for k, v in sample.kwargs.items() if isinstance(v, np.ndarray)
    ]


def _bound(info, sample, refs):
    """The op as a function of the arguments ``refs`` only (the rest closed over, static)."""

    def f(*values):
        return parity.call_jax(info, sample, **{parity.override_key(r): v for r, v in zip(refs, values)})

    return f


def _assert_trees_close(actual, expected, tol, what):
    a_leaves, e_leaves = parity.leaves(actual), parity.leaves(expected)
    assert len(a_leaves) == len(e_leaves), what
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        c = parity.compare(f"{what}[{i}]", a, e, tol)
        assert c.ok, f"{c.what}: {c.message}"


@pytest.mark.parametrize("info,sample", sample_cases("jit"))
def test_jit_matches_eager(info, sample):
    refs = _array_refs(sample)
    values = [parity.to_jax(sample.get(r)) for r in refs]
    f = _bound(info, sample, refs)
    _assert_trees_close(jax.jit(f)(*values), f(*values), sample.fwd_tol or info.fwd_tol, "jit")


def _batch_variants(a: np.ndarray) -> list[np.ndarray]:
    """Three members of a batch built from one sample, keeping its values (and validity)."""
    flipped = np.flip(a, 0) if a.ndim else a
    scaled = (a * 0.5).astype(a.dtype) if is_floating(a.dtype) else a
    return [a, np.array(flipped), np.asarray(scaled)]


@pytest.mark.parametrize("info,sample", sample_cases("vmap"))
def test_vmap_matches_loop(info, sample):
    refs = info.vmap_refs(sample)
    if not refs:
        pytest.skip("no batched argument")
    f = _bound(info, sample, refs)
    members = list(zip(*[_batch_variants(sample.get(r)) for r in refs]))
    stacked = [jnp.stack([jnp.asarray(m[k]) for m in members]) for k in range(len(refs))]
    batched = jax.vmap(f)(*stacked)
    looped = [f(*[jnp.asarray(v) for v in m]) for m in members]
    expected = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
    _assert_trees_close(batched, expected, sample.fwd_tol or info.fwd_tol, "vmap")


@pytest.mark.parametrize("info,sample", sample_cases("jvp"))
def test_jvp_consistent_with_vjp(info, sample):
    """<cotangent, J tangent> (forward mode) equals <J^T cotangent, tangent> (reverse mode)."""
    refs = info.grad_refs(sample)
    if not refs:
        pytest.skip("no differentiable input")
    if not sample.all_finite():
        pytest.skip("inner products with NaN/inf are not comparable")
    f = _bound(info, sample, refs)
    primals = [parity.to_jax(sample.get(r)) for r in refs]
    rng = np.random.default_rng(1)
    tangents = [jnp.asarray(rng.standard_normal(p.shape), p.dtype) for p in primals]
    out, out_tangent = jax.jvp(f, primals, tangents)
    out_leaves, treedef = jax.tree_util.tree_flatten(out)
    if not all(np.isfinite(np.asarray(x, np.float64)).all() for x in out_leaves if jnp.issubdtype(x.dtype, jnp.inexact)):
        pytest.skip("non-finite output (e.g. 0/0): inner products are not comparable")
    carrying = info.grad_outputs
    cots = []
    for pos, leaf in enumerate(out_leaves):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            cots.append(np.zeros(leaf.shape, jax.dtypes.float0))
        elif carrying is not None and pos not in carrying:
            cots.append(jnp.zeros_like(leaf))
        else:
            cots.append(jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype))
    grads = jax.vjp(f, *primals)[1](jax.tree_util.tree_unflatten(treedef, cots))
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    forward = sum(
        float(np.sum(f64(c) * f64(t)))
        for c, t in zip(cots, jax.tree_util.tree_leaves(out_tangent))
        if c.dtype != jax.dtypes.float0
    )
    reverse = sum(float(np.sum(f64(g) * f64(t))) for g, t in zip(grads, tangents))
    scale = sum(float(np.sum(np.abs(f64(g) * f64(t)))) for g, t in zip(grads, tangents))
    rtol = max(1e-5, 50 * float(jnp.finfo(primals[0].dtype).eps))
    assert abs(forward - reverse) <= rtol * scale + 1e-6, (forward, reverse)
