"""Generic checks of every registered op against PyTorch (forward and VJP) and its error inputs."""

from __future__ import annotations

import warnings

import pytest

from jaxops.testing import parity

from cases import error_cases, sample_cases


def _assert_all_ok(comparisons, sample):
    failures = [f"{c.what}: {c.message}" for c in comparisons if not c.ok]
    assert not failures, f"{sample!r}\n" + "\n".join(failures)


@pytest.mark.parametrize("info,sample", sample_cases("forward"))
def test_forward_matches_torch(info, sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _assert_all_ok(parity.check_forward(info, sample), sample)


@pytest.mark.parametrize("info,sample", sample_cases("vjp"))
def test_vjp_matches_torch(info, sample):
    if not info.grad_refs(sample):
        pytest.skip("no differentiable input in this sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _assert_all_ok(parity.check_vjp(info, sample, seed=len(sample.name)), sample)


@pytest.mark.parametrize("info,error_input", error_cases())
def test_error_inputs_raise_clear_errors(info, error_input):
    with pytest.raises(error_input.error, match=error_input.match) as excinfo:
        parity.call_jax(info, error_input.sample)
    # Raised by jaxops itself, naming the op, not by XLA or an assert.
    assert str(excinfo.value).startswith(f"jaxops.{info.name}:"), str(excinfo.value)
