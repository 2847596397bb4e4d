"""The harness must be able to fail: deliberately wrong ops are caught, the report flags them."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxops
from jaxops import report
from jaxops.testing import REGISTRY, Tol, parity

SIGMOID = REGISTRY["sigmoid"]


def _failing(info, check):
    return [
        c
        for s in info.samples()
        if check not in s.skip
        for c in getattr(parity, f"check_{check}")(info, s)
        if not c.ok
    ]


def test_wrong_forward_is_caught():
    wrong = dataclasses.replace(SIGMOID, op=lambda x: jaxops.sigmoid(x) * (1 + 1e-4))
    assert _failing(wrong, "forward")


def test_wrong_gradient_with_right_forward_is_caught():
    @jax.custom_jvp
    def sigmoid_bad_grad(x):
        return jaxops.sigmoid(x)

    @sigmoid_bad_grad.defjvp
    def _(primals, tangents):
        s = jaxops.sigmoid(primals[0])
        return s, 1.01 * s * (1 - s) * tangents[0]

    wrong = dataclasses.replace(SIGMOID, op=sigmoid_bad_grad)
    assert not _failing(wrong, "forward")
    assert _failing(wrong, "vjp")


def test_nan_pattern_mismatch_is_caught():
    wrong = dataclasses.replace(SIGMOID, op=lambda x: jnp.nan_to_num(jaxops.sigmoid(x)))
    messages = [c.message for c in _failing(wrong, "forward")]
    assert any("NaN/inf pattern" in m for m in messages)


def test_wrong_reduction_is_caught():
    mse = REGISTRY["mse_loss"]
    wrong = dataclasses.replace(
        mse,
        op=lambda x, y, reduction="mean", weight=None: jaxops.mse_loss(
            x, y, "sum" if reduction == "mean" else reduction, weight
        ),
    )
    assert _failing(wrong, "forward")


def test_wrong_shape_is_caught():
    flat = REGISTRY["flatten"]
    wrong = dataclasses.replace(
        flat, op=lambda x, start_dim=0, end_dim=-1: jnp.ravel(jnp.asarray(x))
    )
    assert any("shape" in c.message for c in _failing(wrong, "forward"))


@pytest.mark.parametrize(
    "actual, expected, ok",
    [
        (np.array([1, 2, 3]), np.array([1, 2, 3]), True),
        (np.array([1, 2, 3]), np.array([1, 2, 4]), False),  # integers compare exactly
        (np.array([1.0, np.nan]), np.array([1.0, np.nan]), True),
        (np.array([1.0, np.inf]), np.array([1.0, -np.inf]), False),
        (np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-3]), False),
        (np.array([1.0]), np.array([1.0, 1.0]), False),
        (None, None, True),
        (None, np.array([1.0]), False),
    ],
)
def test_compare(actual, expected, ok):
    assert parity.compare("x", actual, expected, Tol(1e-5, 1e-6)).ok is ok


def test_report_lists_every_op_and_flags_failures(monkeypatch, capsys):
    wrong = dataclasses.replace(SIGMOID, op=lambda x: jaxops.sigmoid(x) + 1e-3)
    monkeypatch.setitem(REGISTRY, "sigmoid", wrong)  # an existing key: the registry's order is kept
    code = report.main(["--configs", "1"])
    out = capsys.readouterr().out
    assert code == 1
    table = out.split("Formulas:")[0].splitlines()
    lines = {line.split()[1]: line for line in table if line[:2].strip().isdigit()}
    assert list(lines) == list(REGISTRY), (
        "the report lists exactly the registry's ops, in its order"
    )
    assert "FAIL" in lines["sigmoid"]
    assert "PASS" in lines["mse_loss"]

    assert report.main(["--op", "mse_loss", "--configs", "2"]) == 0
    out = capsys.readouterr().out
    assert "mse_loss" in out and "sigmoid" not in out and "2 configurations" in out


def test_report_float64_columns_say_who_is_nearer_the_truth(monkeypatch):
    """A jaxops op off by 1e-5 relative (~80 float32 ulps) shows as far from float64, torch as
    near."""
    wrong = dataclasses.replace(SIGMOID, op=lambda x: jaxops.sigmoid(x) * (1 + 1e-5))
    monkeypatch.setitem(REGISTRY, "sigmoid", wrong)
    row = report.check_op("sigmoid", max_configs=4)

    def rms(err):
        assert err.n > 0, "the float64 comparison ran on some elements"
        return (err.sq / err.n) ** 0.5

    assert rms(row.torch_fwd_f64) <= 1.0, (
        "torch's float32 sigmoid is within an ulp of the exact value"
    )
    assert rms(row.jax_fwd_f64) > 20 * rms(row.torch_fwd_f64)
    assert rms(row.jax_grad_f64) > 20 * rms(row.torch_grad_f64)
