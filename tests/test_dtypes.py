"""Dtype guarantees of every registered op.

- float64 (``jax.enable_x64``) matches torch float64 to ~1e-12, forward and VJP;
  float32 inputs stay float32 with x64 on (no stray float64 constants).
- float16 / bfloat16 inputs give outputs and gradients of the same dtype, computed
  with float32 accumulation: within a couple of half-precision ulps of the float32
  result rounded once, and close to torch's half-precision result.
- Mixed input/parameter dtypes follow JAX's type promotion (torch raises for most).

Each check runs on a few small, finite float32 samples per op, converted.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jaxops.testing import Tol, is_floating, parity

from cases import small_cases

# float64 agrees with torch to rounding: reductions of a few hundred terms at
# eps=2.2e-16 leave errors well below 1e-12, relative or (near zero) absolute.
F64_TOL = Tol(1e-12, 1e-12)

HALF = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _floating_leaves(out):
    return [x for x in parity.leaves(out) if x is not None and is_floating(x.dtype)]


def _assert_ok(comparisons, sample):
    failures = [f"{c.what}: {c.message}" for c in comparisons if not c.ok]
    assert not failures, f"{sample!r}\n" + "\n".join(failures)


# ---------------------------------------------------------------- float64


@pytest.mark.parametrize("info,sample", small_cases("float64", per_op=3, max_numel=512))
def test_float64_matches_torch_float64(info, sample):
    sample64 = dataclasses.replace(
        parity.cast_floating(sample, np.float64), fwd_tol=F64_TOL, grad_tol=F64_TOL
    )
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = parity.call_jax(info, sample64)
        dtypes = [x.dtype for x in _floating_leaves(out)]
        assert dtypes and all(d == jnp.float64 for d in dtypes), dtypes
        _assert_ok(parity.check_forward(info, sample64), sample64)
        if "vjp" not in sample.skip:
            _assert_ok(parity.check_vjp(info, sample64), sample64)


@pytest.mark.parametrize("info,sample", small_cases("float64", per_op=2))
def test_float32_stays_float32_under_x64(info, sample):
    """With x64 on, a float32 call must not be silently promoted by a float64 constant."""
    with jax.enable_x64(True):
        refs = info.grad_refs(sample)
        f = parity.bind(info, sample, refs)
        primals = [jnp.asarray(sample.get(r)) for r in refs]
        out, vjp_fn = jax.vjp(f, *primals)
        assert all(x.dtype == jnp.float32 for x in _floating_leaves(out)), [
            x.dtype for x in _floating_leaves(out)
        ]
        cot = jax.tree_util.tree_map(
            lambda x: (
                jnp.ones_like(x)
                if jnp.issubdtype(x.dtype, jnp.inexact)
                else np.zeros(x.shape, jax.dtypes.float0)
            ),
            out,
        )
        assert all(g.dtype == jnp.float32 for g in vjp_fn(cot))


# ---------------------------------------------------------------- float16 / bfloat16


def _ulps_tol(dtype, ulps: float, reference: np.ndarray) -> Tol:
    """``ulps`` units in the last place of ``dtype`` relative to each value, plus the same
    relative to the largest magnitude for values that come out of cancellation."""
    eps = float(jnp.finfo(dtype).eps)
    finite = reference[np.isfinite(reference)]
    scale = float(np.max(np.abs(finite), initial=0.0))
    return Tol(ulps * eps, ulps * eps * scale + float(jnp.finfo(dtype).tiny))


# Primitives that sum many terms: on half-precision operands each must be fed
# float32 (XLA's reduce/reduce_window on float16/bfloat16 round every partial
# sum to the operand type), as torch's kernels accumulate in float32. Small
# samples cannot show a half-precision accumulator numerically, so the check
# reads the jaxpr. Dots and convolutions are not listed: XLA's CPU, GPU and TPU
# backends accumulate half-precision contractions in float32 whatever the
# output type (the value comparisons below would show otherwise).
_SUMS = {"reduce_sum", "cumsum", "reduce_window_sum", "reduce_prod", "cumprod"}


def _eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _half_accumulations(closed_jaxpr) -> list[str]:
    bad = []
    for eqn in _eqns(closed_jaxpr.jaxpr):
        dtypes = [v.aval.dtype for v in eqn.invars if hasattr(v.aval, "dtype")]
        half_in = any(is_floating(d) and jnp.finfo(d).bits < 32 for d in dtypes)
        if not half_in:
            continue
        name = eqn.primitive.name
        if name == "reduce_sum" and all(
            eqn.invars[0].aval.shape[a] == 1 for a in eqn.params["axes"]
        ):
            # over axes of size 1 (a transposed broadcast): nothing is added, nothing rounded
            continue
        if name in _SUMS:
            bad.append(f"{name} on {dtypes}")
        elif name in ("reduce", "reduce_window") and any(
            e.primitive.name in ("add", "add_any", "mul")
            for e in _eqns(getattr(eqn.params["jaxpr"], "jaxpr", eqn.params["jaxpr"]))
        ):
            bad.append(f"{name} summing {dtypes}")
    return bad


def _half_cases():
    return [
        pytest.param(*p.values, dtype, id=f"{p.id}-{dtype}")
        for p in small_cases("half", per_op=3, max_numel=512)
        for dtype in HALF
    ]


def _bound_floats(info, sample):
    refs = info.grad_refs(sample)

    def f(*p):
        return _floating_leaves(parity.bind(info, sample, refs)(*p))

    return f, refs, [jnp.asarray(sample.get(r)) for r in refs]


@pytest.mark.parametrize("info,sample,dtype", _half_cases())
def test_half_precision_forward(info, sample, dtype):
    """Output dtype kept, float32 accumulation, float32 result rounded once, close to torch."""
    half = parity.cast_floating(sample, HALF[dtype])
    upcast = parity.cast_floating(
        half, np.float32
    )  # the float32 reference sees exactly the half values
    out_half = _floating_leaves(parity.call_jax(info, half))
    out_f32 = _floating_leaves(parity.call_jax(info, upcast))
    assert [x.dtype for x in out_half] == [jnp.dtype(HALF[dtype])] * len(out_half)
    f, _, primals = _bound_floats(info, half)
    bad = _half_accumulations(jax.make_jaxpr(f)(*primals))
    assert not bad, f"half-precision accumulation in the forward pass: {bad}"
    for i, (h, r) in enumerate(zip(out_half, out_f32)):
        r = np.asarray(r, np.float32)
        rounded = r.astype(HALF[dtype]).astype(np.float32)
        c = parity.compare(
            f"output[{i}] vs float32 rounded once",
            np.asarray(h, np.float32),
            rounded,
            _ulps_tol(HALF[dtype], 2, r),
        )
        assert c.ok, c.message

    # torch in the same dtype (when its CPU kernels support it): a few ulps apart.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            theirs = [
                parity.to_numpy(t)
                for t in parity.leaves(parity.call_torch(info, half)[0])
                if t is not None and t.dtype.is_floating_point
            ]
    except (RuntimeError, NotImplementedError) as e:  # e.g. "not implemented for 'Half'"
        pytest.skip(
            f"torch has no CPU {dtype} kernel here ({str(e).splitlines()[0]}); "
            "checked against float32 only"
        )
    assert len(theirs) == len(out_half)
    for i, (h, t) in enumerate(zip(out_half, theirs)):
        t = t.astype(np.float32)
        c = parity.compare(
            f"output[{i}] vs torch {dtype}",
            np.asarray(h, np.float32),
            t,
            _ulps_tol(HALF[dtype], 4, t),
        )
        assert c.ok, c.message


@pytest.mark.parametrize("info,sample,dtype", _half_cases())
def test_half_precision_gradients(info, sample, dtype, request):
    """Gradients keep the dtype, accumulate in float32, and are the float32 gradients to half
    precision."""
    if "vjp" in sample.skip:
        pytest.skip(sample.skip["vjp"])
    half = parity.cast_floating(sample, HALF[dtype])
    upcast = parity.cast_floating(half, np.float32)
    f, refs, primals = _bound_floats(info, half)

    def vjp_of(*p):
        out, vjp_fn = jax.vjp(f, *p)
        return vjp_fn([jnp.ones_like(o) for o in out])

    def grads(s):
        g, _, prim = _bound_floats(info, s)
        out, vjp_fn = jax.vjp(g, *prim)
        rng = np.random.default_rng(0)
        return vjp_fn(
            [
                jnp.asarray(
                    rng.standard_normal(o.shape).astype(np.float32).astype(HALF[dtype]), o.dtype
                )
                for o in out
            ]
        )

    g_half, g_f32 = grads(half), grads(upcast)
    for ref, gh, gf in zip(refs, g_half, g_f32):
        assert gh.dtype == jnp.dtype(HALF[dtype]), (ref, gh.dtype)
        gf = np.asarray(gf, np.float32)
        c = parity.compare(
            f"grad[{ref!r}]", np.asarray(gh, np.float32), gf, _ulps_tol(HALF[dtype], 4, gf)
        )
        assert c.ok, c.message
    # An op whose backward pass still sums in half precision declares it (OpInfo.dtype_deviations);
    # strict: once fixed, the XPASS fails and the declaration must go.
    if "half_gradients" in info.dtype_deviations:
        request.applymarker(
            pytest.mark.xfail(
                reason=info.dtype_deviations["half_gradients"], raises=AssertionError, strict=True
            )
        )
    bad = _half_accumulations(jax.make_jaxpr(vjp_of)(*primals))
    assert not bad, f"half-precision accumulation in the backward pass: {bad}"


# ---------------------------------------------------------------- mixed dtypes


def _floating_refs(sample):
    refs = [
        i for i, a in enumerate(sample.args) if isinstance(a, np.ndarray) and is_floating(a.dtype)
    ]
    return refs + [
        k for k, v in sample.kwargs.items() if isinstance(v, np.ndarray) and is_floating(v.dtype)
    ]


def _mixed_cases():
    cases = []
    for p in small_cases("mixed_dtypes", per_op=4, max_numel=512):
        info, sample = p.values
        if len(_floating_refs(sample)) >= 2 and not any(c.values[0] is info for c in cases):
            cases.append(p)
    return cases


@pytest.mark.parametrize("info,sample", _mixed_cases())
@pytest.mark.parametrize("lowered", ["input", "parameters"])
def test_mixed_dtypes_follow_jax_promotion(info, sample, lowered, request):
    """bfloat16 input with float32 parameters, or the reverse.

    Where torch rejects the mix ("expected scalar type ..."), jaxops follows JAX's
    type promotion: the output has ``jnp.result_type`` of the floating inputs.
    Where torch defines it (e.g. batch_norm's half input with float32
    statistics, output in the input's dtype), jaxops returns torch's dtype.
    Either way the values are the float32 computation on the bfloat16-rounded
    values (rounded to the output dtype).
    """
    # Ops that reject a mix torch also rejects, instead of promoting, declare it
    # (OpInfo.dtype_deviations); the project's rule is JAX promotion (README,
    # "Differences from PyTorch"). Strict: once the op promotes, the XPASS fails.
    if "mixed_dtypes" in info.dtype_deviations:
        request.applymarker(
            pytest.mark.xfail(
                reason=info.dtype_deviations["mixed_dtypes"], raises=TypeError, strict=True
            )
        )
    refs = _floating_refs(sample)
    low = refs[:1] if lowered == "input" else refs[1:]
    mixed = sample
    for r in low:
        mixed = mixed.replace(r, sample.get(r).astype(ml_dtypes.bfloat16))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch_out = parity.leaves(parity.call_torch(info, mixed)[0])[0]
        expected_dtype = jnp.dtype(str(torch_out.dtype).removeprefix("torch."))
        rule = "torch's dtype for this mix"
    except (RuntimeError, TypeError):  # torch rejects the mix
        expected_dtype = jnp.result_type(*[mixed.get(r).dtype for r in refs])
        rule = "JAX promotion (torch raises)"
    reference = parity.cast_floating(mixed, np.float32)
    ours = parity.leaves(parity.call_jax(info, mixed))
    theirs = parity.leaves(parity.call_jax(info, reference))
    assert ours[0].dtype == expected_dtype, (
        f"output dtype {ours[0].dtype}; {rule} gives {expected_dtype}"
    )
    comparisons = []
    for i, (o, t) in enumerate(zip(ours, theirs)):
        tol = sample.fwd_tol or info.fwd_tol
        if o is not None and is_floating(o.dtype) and jnp.finfo(o.dtype).bits < 32:
            tol = _ulps_tol(o.dtype, 2, np.asarray(t, np.float32))  # an output in half precision
        comparisons.append(parity.compare(f"output[{i}]", o, t, tol))
    _assert_ok(comparisons, mixed)
