"""``jax.export`` of every registered op: serialise, deserialise, call, differentiate.

Serialisation needs the ``flatbuffers`` package (in the ``test`` extra). Runs on
a few small samples per op; symbolic batch sizes are checked two ways: a
symbolic ``vmap`` axis (every op), and a symbolic N in the op's own batch axis
(ops and samples that have one, see ``OpInfo.batch_args``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from jaxops.testing import Tol, parity

from cases import batch_cases, small_cases

pytest.importorskip("flatbuffers", reason="jax.export serialisation needs flatbuffers")


def _roundtrip(exported: export.Exported, vjp_order: int = 0) -> export.Exported:
    blob = exported.serialize(vjp_order=vjp_order)
    assert isinstance(blob, (bytes, bytearray)) and blob
    return export.deserialize(blob)


@pytest.mark.parametrize("info,sample", small_cases("export"))
def test_export_serialize_roundtrip(info, sample):
    """Every array argument is an input of the exported function; the rest are static."""
    refs = parity.array_refs(sample)
    f = parity.bind(info, sample, refs)
    values = [jnp.asarray(sample.get(r)) for r in refs]
    exported = export.export(jax.jit(f))(*[jax.ShapeDtypeStruct(v.shape, v.dtype) for v in values])
    restored = _roundtrip(exported, vjp_order=1)
    assert restored.in_avals == exported.in_avals and restored.out_avals == exported.out_avals
    # Same StableHLO, compiled by the same XLA: bit-identical to jit.
    parity.assert_trees_close(
        restored.call(*values), jax.jit(f)(*values), Tol(0.0, 0.0), "exported"
    )

    # Serialised with vjp_order=1, the restored function is differentiable.
    grad_refs = info.grad_refs(sample)
    pos = [refs.index(r) for r in grad_refs]

    def restricted(call):
        def g(*diff):
            full = list(values)
            for p, d in zip(pos, diff):
                full[p] = d
            return [
                x
                for x in jax.tree_util.tree_leaves(call(*full))
                if jnp.issubdtype(x.dtype, jnp.inexact)
            ]

        return g

    primals = [values[p] for p in pos]
    out, vjp_restored = jax.vjp(restricted(restored.call), *primals)
    rng = np.random.default_rng(0)
    cot = [jnp.asarray(rng.standard_normal(o.shape), o.dtype) for o in out]
    expected = jax.vjp(restricted(f), *primals)[1](cot)
    tol = sample.grad_tol or info.grad_tol
    parity.assert_trees_close(
        vjp_restored(cot), expected, Tol(max(tol.rtol, 1e-6), max(tol.atol, 1e-7)), "exported vjp"
    )


def _variants(a: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` batch members built from ``a`` (same validity: integer arrays repeat, floats are
    scaled)."""
    if a.dtype.kind in "iub":
        return [a] * n
    return [(a * (1.0 - 0.25 * k)).astype(a.dtype) for k in range(n)]


@pytest.mark.parametrize("info,sample", small_cases("export", per_op=2))
def test_export_symbolic_vmap_batch(info, sample):
    """``vmap(op)`` over the first argument (e.g. the input, weights shared), exported once with
    a symbolic batch size, serves every batch size.

    Only the first argument is batched: a convolution vmapped over its weight becomes a grouped
    convolution with ``feature_group_count`` = batch, which cannot be symbolic in XLA.
    """
    refs = info.vmap_refs(sample)[:1]
    f = parity.bind(info, sample, refs)
    (b,) = export.symbolic_shape("b")
    specs = [jax.ShapeDtypeStruct((b, *np.shape(sample.get(r))), sample.get(r).dtype) for r in refs]
    restored = _roundtrip(export.export(jax.jit(jax.vmap(f)))(*specs))
    for size in (1, 3):
        members = [_variants(sample.get(r), size) for r in refs]
        stacked = [jnp.stack(m) for m in members]
        looped = [f(*[jnp.asarray(m[k]) for m in members]) for k in range(size)]
        expected = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
        parity.assert_trees_close(
            restored.call(*stacked), expected, sample.fwd_tol or info.fwd_tol, f"vmap b={size}"
        )


@pytest.mark.parametrize("info,sample", batch_cases("export"))
def test_export_symbolic_batch_axis(info, sample):
    """The op's own batch axis N exported as a symbolic dimension, called with N and 2N."""
    refs = info.batch_refs(sample)
    f = parity.bind(info, sample, refs)
    (n,) = export.symbolic_shape("n")
    specs = [
        jax.ShapeDtypeStruct((n, *np.shape(sample.get(r))[1:]), sample.get(r).dtype) for r in refs
    ]
    try:
        exported = export.export(jax.jit(f))(*specs)
    except Exception as e:  # report which op needs a concrete batch size, and why
        pytest.fail(
            f"{info.name} does not export with a symbolic batch size: {type(e).__name__}: {e}"
        )
    restored = _roundtrip(exported)
    for reps in (1, 2):
        values = [jnp.concatenate([jnp.asarray(sample.get(r))] * reps) for r in refs]
        parity.assert_trees_close(
            restored.call(*values),
            jax.jit(f)(*values),
            sample.fwd_tol or info.fwd_tol,
            f"N x{reps}",
        )
