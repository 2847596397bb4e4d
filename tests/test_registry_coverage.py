"""Meta-tests over the registry: every op is registered, exported, and its entry covers the corners.

The generic tests only check what the registry holds; these make sure it holds
enough: error inputs, NaN/inf and empty samples, a fuzz strategy, clear errors
for non-array inputs (eagerly and under ``jit``), declared batch axes and
data-dependent errors, and honest opt-outs and deviations.
"""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest
from hypothesis.strategies import SearchStrategy

import jaxops
from jaxops import _checks
from jaxops.testing import ALL_OPS, REGISTRY, SampleInput, is_floating, no_batch_axis, parity
from jaxops.testing.opinfo import DTYPE_CHECKS

CHECKS = {"forward", "vjp", "jit", "vmap", "jvp"}
# Every check that tests/cases.py selects samples for: where ``SampleInput.xfail`` can apply.
CASE_CHECKS = CHECKS | {
    "jacobian",
    "hvp",
    "remat",
    "export",
    "float64",
    "half",
    "mixed_dtypes",
    "sharding",
    "traces",
}


def _exported_ops() -> set[str]:
    """The op functions among ``jaxops.__all__``: functions defined in a public jaxops module
    (not ``checked``, from ``jaxops._checks``, nor result types such as ``BatchNormOutput``)."""
    return {
        name
        for name in jaxops.__all__
        if inspect.isfunction(getattr(jaxops, name))
        and not getattr(jaxops, name).__module__.startswith("jaxops._")
    }


def test_registry_names_match_the_op_list():
    assert set(REGISTRY) == _exported_ops(), set(REGISTRY) ^ _exported_ops()
    assert ALL_OPS == tuple(REGISTRY)
    assert {"checked", "BatchNormOutput"} <= set(jaxops.__all__) - _exported_ops()


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_is_exported_and_registered(name):
    assert name in jaxops.__all__
    info = REGISTRY[name]
    assert info.op is getattr(jaxops, name), "the registry must test the exported function"
    assert info.torch_name and info.formula


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_has_error_inputs(name):
    errors = list(REGISTRY[name].error_inputs())
    assert errors, "every op needs error inputs covering what torch rejects"
    for err in errors:
        assert err.error in (ValueError, TypeError), err
        assert err.match, err


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_has_a_strategy(name):
    info = REGISTRY[name]
    assert info.strategy is not None, (
        f"{name} has no hypothesis strategy: tests/test_fuzz.py cannot fuzz it"
    )
    assert isinstance(info.strategy(), SearchStrategy)


def _has_nonfinite(sample: SampleInput) -> bool:
    return any(
        is_floating(a.dtype) and not np.isfinite(a.astype(np.float64)).all()
        for a in sample.arrays()
    )


def _has_empty(sample: SampleInput) -> bool:
    return any(a.size == 0 for a in sample.arrays())


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_has_special_value_and_empty_samples(name):
    samples = REGISTRY[name].samples()
    assert any(_has_nonfinite(s) for s in samples), "no sample with NaN or ±inf"
    assert any(_has_empty(s) for s in samples), "no sample with an empty dimension"
    assert any(_has_nonfinite(s) and "vjp" not in s.skip for s in samples), (
        "NaN/inf gradients must be checked against torch by at least one sample"
    )


@pytest.mark.parametrize("name", ALL_OPS)
def test_samples_are_named_sized_and_opt_out_honestly(name):
    samples = REGISTRY[name].samples()
    assert 8 <= len(samples) <= 80, f"{len(samples)} samples: aim for 25-50 small ones"
    for s in samples:
        assert s.name, s
        assert set(s.skip) <= CHECKS, s.skip
        for check, reason in s.skip.items():
            assert isinstance(reason, str) and len(reason) >= 20, (
                f"{s.name}: skip[{check!r}] needs a real reason"
            )
        assert s.skip.keys() != CHECKS, f"{s.name} opts out of every check"
        assert set(s.xfail) <= CASE_CHECKS, s.xfail
        for check, reason in s.xfail.items():
            assert isinstance(reason, str) and len(reason) >= 20, (
                f"{s.name}: xfail[{check!r}] needs a real reason"
            )
            assert check not in s.skip, f"{s.name} both skips and expects to fail {check!r}"


@pytest.mark.parametrize("name", ALL_OPS)
def test_dtype_deviations_are_known_checks_with_reasons(name):
    deviations = REGISTRY[name].dtype_deviations
    assert set(deviations) <= set(DTYPE_CHECKS), deviations
    for check, reason in deviations.items():
        assert isinstance(reason, str) and len(reason) >= 20, (
            f"dtype_deviations[{check!r}] needs a real reason"
        )


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_declares_its_batch_axis(name):
    """``batch_args`` is declared (``no_batch_axis`` for an op without one) and names array
    arguments that share their leading axis; an op with a batch axis shows it in some sample."""
    info = REGISTRY[name]
    assert info.batch_args is not None, (
        f"{name}: declare OpInfo.batch_args (or batch_args=no_batch_axis): the export and "
        "sharding checks of the batch axis N read it"
    )
    batched = 0
    for s in info.samples():
        refs = info.batch_args(s)
        if not refs:
            continue
        arrays = [s.get(r) for r in refs]
        assert all(isinstance(a, np.ndarray) and a.ndim >= 1 for a in arrays), (s.name, refs)
        assert len({a.shape[0] for a in arrays}) == 1, (
            f"{s.name}: {refs} differ in their leading axis"
        )
        batched += bool(info.batch_refs(s))
    if info.batch_args is not no_batch_axis:
        assert batched, f"{name} declares a batch axis but no sample has a non-empty one"


def _effects(info, sample) -> bool:
    """Whether tracing ``sample`` with checks enabled emits a data-dependent check."""
    refs = parity.array_refs(sample)
    with _checks._enabled():
        return bool(
            jax.make_jaxpr(parity.bind(info, sample, refs))(
                *[parity.to_jax(sample.get(r)) for r in refs]
            ).effects
        )


@pytest.mark.parametrize("name", ALL_OPS)
def test_data_dependent_checks_are_declared(name):
    """An op that emits data-dependent checks (``_checks.data_check``) declares its errors in
    ``OpInfo.data_errors`` (tests/test_checked.py runs each), and each declared bad call is
    checked."""
    info = REGISTRY[name]
    samples = info.samples()
    spread = samples[:: max(1, len(samples) // 12)]
    checking = [s.name for s in spread if _effects(info, s)]
    if checking:
        assert info.data_errors, (
            f"{name} emits data-dependent checks ({checking[:3]}) but declares no data_errors"
        )
    for err in info.data_errors:
        assert _effects(info, err.bad), f"{name}: {err.bad!r} emits no data-dependent check"
        assert err.match.startswith(rf"^jaxops\.{name}: "), err.match


@pytest.mark.parametrize("name", ALL_OPS)
def test_non_array_inputs_raise_clear_errors(name):
    info = REGISTRY[name]
    sample = info.samples()[0]
    refs = parity.array_refs(sample)
    assert refs, "the first sample has no array argument"
    bad_values = {"a string": "abc", "an object": object()}
    for ref in refs:
        for what, value in bad_values.items():
            with pytest.raises((TypeError, ValueError)) as excinfo:
                parity.call_jax(info, sample, **{parity.override_key(ref): value})
            message = str(excinfo.value)
            assert message.startswith(f"jaxops.{name}:"), f"{what} as argument {ref!r}: {message}"
    # torch requires a tensor where jaxops takes an array: a Python list is rejected too.
    with pytest.raises((TypeError, ValueError), match=rf"^jaxops\.{name}:"):
        parity.call_jax(info, sample, **{parity.override_key(refs[0]): [[1.0, 2.0]]})


@pytest.mark.parametrize("name", ALL_OPS)
def test_error_inputs_raise_the_same_errors_under_jit(name):
    """Validation reads only shapes, dtypes and static arguments, so it works on tracers too."""
    info = REGISTRY[name]
    for err in info.error_inputs():
        refs = parity.array_refs(err.sample)
        values = [parity.to_jax(err.sample.get(r)) for r in refs]
        with pytest.raises(err.error, match=err.match) as excinfo:
            jax.jit(parity.bind(info, err.sample, refs))(*values)
        assert str(excinfo.value).startswith(f"jaxops.{name}:"), str(excinfo.value)
