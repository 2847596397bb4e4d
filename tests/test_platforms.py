"""The platform boundary, proven without a device.

- Every op's portable formulation, lowered for ``cuda`` and ``tpu`` (only that
  platform's branch is kept), forward and VJP: no ``while`` loop, no branch on
  the data, no scatter unless the registry entry says why it is the op's
  definition, contractions at ``Precision.HIGHEST``, and an XLA convolution in
  each convolution program.
- ``jaxops.testing.portable()`` is part of the jit cache key, and traces the
  portable formulation on CPU (the parity of that formulation against torch
  runs in the generic tests, for every op that has one: tests/cases.py).
- One artifact exported for CPU, CUDA and TPU runs on CPU like the plain jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxops
from jaxops.testing import REGISTRY, lowering, parity, portable

from cases import differs_by_platform, sample_cases

# Each sample lowers the op and its gradient for two platforms (seconds apiece); the
# portable formulations do not branch on the configuration, so two samples per op
# (the sampler spreads them over the op's corners) see every lowering path.
LOWERING_SAMPLES_PER_OP = 2


def _bound(info, sample):
    """The op as a function of its floating array arguments (a user may differentiate
    with respect to any of them), and their values."""
    refs = [
        r for r in parity.array_refs(sample) if jnp.issubdtype(sample.get(r).dtype, jnp.floating)
    ]
    return parity.bind(info, sample, refs), [parity.to_jax(sample.get(r)) for r in refs]


def _cotangent(out):
    def leaf(x):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            return jnp.ones(x.shape, x.dtype)
        return np.zeros(x.shape, jax.dtypes.float0)

    return jax.tree_util.tree_map(leaf, out)


def _programs(info, sample):
    """``(mode, function, args)``: the forward and, with a differentiable input, the VJP alone."""
    f, primals = _bound(info, sample)
    yield "fwd", f, primals
    if primals:
        cot = _cotangent(jax.eval_shape(f, *primals))
        yield "grad", (lambda p, c: jax.vjp(f, *p)[1](c)), (primals, cot)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize(
    "info,sample", sample_cases("lowering", per_op=LOWERING_SAMPLES_PER_OP, portable=False)
)
def test_portable_formulation_lowers_to_what_gpu_and_tpu_run_well(info, sample, platform):
    rules = info.lowering
    for mode, fn, args in _programs(info, sample):
        text = lowering.lowered_text(fn, *args, platform=platform)
        counts = lowering.op_counts(text)
        where = f"{info.name} {mode} on {platform}"
        assert counts["while"] == 0, f"{where}: {counts['while']} while loop(s)"
        assert counts["case"] == 0, f"{where}: {counts['case']} branch(es) on the data"
        if mode not in rules.scatter:
            assert counts["scatter"] == 0, f"{where}: {counts['scatter']} scatter(s)"
        if rules.convolution:
            assert counts["convolution"] >= 1, f"{where}: no XLA convolution"
        precisions = lowering.contraction_precisions(text)
        assert all(p == "HIGHEST" for p in precisions), (
            f"{where}: contraction precisions {precisions}"
        )


def test_the_lowering_checks_can_fail():
    """The counters see what the rules forbid: a while loop, a data-dependent case, a scatter."""
    x = jnp.arange(6.0)

    def loop(x):
        return jax.lax.fori_loop(0, 3, lambda i, v: v * 2, x)

    def branch(x):
        return jax.lax.cond(x.sum() > 0, lambda v: v * 2, lambda v: v - 1, x)

    def scatter(x):
        return jnp.zeros(6).at[jnp.array([1, 1, 2])].add(x[:3])

    def by_platform(x):
        return jax.lax.platform_dependent(x, cpu=lambda v: v * 2, default=lambda v: v + 1)

    assert lowering.op_counts(lowering.lowered_text(loop, x, platform="cuda"))["while"] == 1
    assert lowering.op_counts(lowering.lowered_text(branch, x, platform="cuda"))["case"] == 1
    assert lowering.op_counts(lowering.lowered_text(scatter, x, platform="tpu"))["scatter"] == 1
    assert lowering.op_counts(lowering.lowered_text(by_platform, x, platform="cuda"))["case"] == 0
    dot = lambda a: a @ a.T  # noqa: E731
    assert lowering.contraction_precisions(
        lowering.lowered_text(dot, x[None], platform="cuda")
    ) == ["DEFAULT"]


@pytest.mark.parametrize(
    "name", ["conv2d", "conv_transpose2d", "max_pool2d", "roi_pool", "roi_align"]
)
def test_formulation_differs_by_platform(name):
    """These ops carry a CPU-tuned and a portable formulation (so both are tested)."""
    assert differs_by_platform(name)


def test_portable_context_keys_the_jit_cache():
    traces = []

    @jax.jit
    def f(x, w):
        traces.append(None)
        return jaxops.conv2d(x, w, padding=1)

    x, w = jnp.ones((2, 3, 6, 6)), jnp.ones((4, 3, 3, 3))
    native = f(x, w)
    with portable():
        ported = f(x, w)
        text = lowering.lowered_text(f, x, w, platform="cpu")
    f(x, w)
    assert len(traces) == 2, "portable() must not reuse the native trace, nor the reverse"
    np.testing.assert_allclose(ported, native, rtol=1e-6, atol=1e-6)
    # On CPU, portable() leaves only the portable formulation: one XLA convolution in NCHW,
    # not the CPU formulation's NHWC one between transposes.
    counts = lowering.op_counts(text)
    assert counts["convolution"] == 1 and counts["transpose"] == 0, counts
    assert lowering.op_counts(lowering.lowered_text(f, x, w, platform="cpu"))["transpose"] >= 2


@pytest.mark.parametrize(
    "precision,expected", [(None, "HIGHEST"), ("default", "DEFAULT"), ("high", "HIGH")]
)
def test_precision_reaches_the_contractions(precision, expected):
    x, w = jnp.ones((1, 2, 6, 6)), jnp.ones((2, 2, 3, 3))
    boxes = jnp.array([[0.0, 0.5, 0.5, 4.0, 4.0]])
    calls = [
        lambda x, w: jaxops.conv2d(x, w, stride=2, precision=precision),
        lambda x, w: jaxops.conv_transpose2d(x, w, stride=2, precision=precision),
        lambda x, w: jaxops.roi_align(x, boxes, 2, sampling_ratio=2, precision=precision),
    ]
    for call in calls:
        for fn, args in (
            (call, (x, w)),
            (jax.grad(lambda x, w, call=call: call(x, w).sum(), argnums=(0, 1)), (x, w)),
        ):
            found = lowering.contraction_precisions(
                lowering.lowered_text(fn, *args, platform="cuda")
            )
            assert found and set(found) == {expected}, found


EXPORT_PLATFORMS = ("cpu", "cuda", "tpu")


@pytest.mark.parametrize("info,sample", sample_cases("export", per_op=1, portable=False))
def test_one_artifact_for_cpu_cuda_and_tpu_runs_on_cpu(info, sample):
    f, primals = _bound(info, sample)
    if not primals:
        pytest.skip("no floating array argument")
    exported = jax.export.export(jax.jit(f), platforms=EXPORT_PLATFORMS)(*primals)
    assert exported.platforms == EXPORT_PLATFORMS
    restored = jax.export.deserialize(exported.serialize())
    ours, expected = parity.leaves(restored.call(*primals)), parity.leaves(jax.jit(f)(*primals))
    assert len(ours) == len(expected)
    tol = sample.fwd_tol or info.fwd_tol
    for i, (a, b) in enumerate(zip(ours, expected)):
        c = parity.compare(f"exported[{i}]", a, b, tol)
        assert c.ok, c.message


def test_every_registered_op_is_checked_for_lowering():
    covered = {
        p.values[0].name
        for p in sample_cases("lowering", per_op=LOWERING_SAMPLES_PER_OP, portable=False)
    }
    assert covered == set(REGISTRY)
