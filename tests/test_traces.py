"""Jit caching and output types of every registered op (checked with chex).

A user calling an op again with the same configuration (static arguments, shapes
and dtypes) and fresh arrays must hit the caches: eagerly, the op's private
jitted core is neither traced nor compiled again (its cache does not grow), and
inside the user's own ``jax.jit`` the op is traced once (``chex.assert_max_traces``).

Output dtypes are torch's (``chex.assert_type``): ``parity.compare`` checks values,
NaN/inf patterns, shapes and exact integers, but compares floats in float64,
whatever their dtype.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxops.testing import REGISTRY, is_floating, parity

from cases import sample_cases

# The events JAX records for each trace of a function and each XLA compilation.
TRACE_OR_COMPILE = {
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/backend_compile_duration",
}

SAMPLES_PER_OP = 4


@pytest.fixture
def compilations():
    """The trace and compile events JAX records while the test runs (cleared by the test as
    needed)."""
    events: list[str] = []

    def listener(name, secs, **kwargs):
        if name in TRACE_OR_COMPILE:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


def _fresh_calls(sample, refs, count: int) -> list[list[jax.Array]]:
    """``count`` sets of new arrays with the sample's shapes and dtypes: floating arrays scaled
    (still valid arguments), integer ones (indices, targets) copied; made before anything is
    counted."""

    def fresh(a: np.ndarray, k: int) -> np.ndarray:
        return (a * (1.0 - 0.25 * k)).astype(a.dtype) if is_floating(a.dtype) else a.copy()

    return [[jnp.asarray(fresh(sample.get(r), k)) for r in refs] for k in range(count)]


def _core_cache_sizes(info) -> dict[str, int]:
    """Cache sizes of the jitted cores of the op's module (its private ``jax.jit`` functions)."""
    module = sys.modules[info.op.__module__]
    return {
        name: fn._cache_size() for name, fn in vars(module).items() if hasattr(fn, "_cache_size")
    }


def _check_cache_hits(info, sample, compilations: list[str]) -> None:
    refs = parity.array_refs(sample)
    f = parity.bind(info, sample, refs)
    calls = _fresh_calls(sample, refs, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # Eagerly: the first call traces and compiles the op's core, the others reuse it.
        first = f(*calls[0])
        sizes = _core_cache_sizes(info)
        compilations.clear()
        for values in calls[1:]:
            again = jax.block_until_ready(f(*values))
            chex.assert_trees_all_equal_shapes_and_dtypes(again, first)
        assert not compilations, f"eager call with the same configuration: {compilations}"
        assert _core_cache_sizes(info) == sizes, "the op's jitted core cached a new entry"

        # Inside a user's jit: traced once, then every call is a cache hit.
        chex.clear_trace_counter()
        jitted = jax.jit(chex.assert_max_traces(f, n=1))
        out = jitted(*calls[0])
        chex.assert_trees_all_equal_shapes_and_dtypes(out, first)
        compilations.clear()
        for values in calls[1:]:
            jax.block_until_ready(jitted(*values))
        assert not compilations, f"jit of the op recompiled: {compilations}"


@pytest.mark.parametrize("info,sample", sample_cases("traces", per_op=SAMPLES_PER_OP))
def test_repeated_calls_neither_retrace_nor_recompile(info, sample, compilations):
    _check_cache_hits(info, sample, compilations)


def test_an_op_that_retraces_is_caught(compilations):
    """The check can fail: an op that builds a new jitted function per call retraces every time."""
    info = REGISTRY["sigmoid"]
    wrong = dataclasses.replace(info, op=lambda x: jax.jit(lambda y: info.op(y) * 1.0)(x))
    with pytest.raises(AssertionError, match="eager call with the same configuration"):
        _check_cache_hits(wrong, info.samples()[-1], compilations)


@pytest.mark.parametrize("info,sample", sample_cases("forward", per_op=2 * SAMPLES_PER_OP))
def test_output_dtypes_are_torch_s(info, sample):
    """Floating outputs have torch's dtype (half stays half, integer inputs promote as torch's);
    integer outputs (indices) are integers, int32 where torch has int64 (x64 off)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = [o for o in parity.leaves(parity.call_jax(info, sample)) if o is not None]
        theirs = [t for t in parity.leaves(parity.call_torch(info, sample)[0]) if t is not None]
    assert len(ours) == len(theirs)
    expected = [
        jnp.dtype(str(t.dtype).removeprefix("torch.")) if t.dtype.is_floating_point else int
        for t in theirs
    ]
    chex.assert_type(ours, expected)
