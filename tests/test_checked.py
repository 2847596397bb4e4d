"""``jaxops.checked``: data-dependent errors raise under it, eagerly and with jit, and never leak.

A toy op built like the real ones (public wrapper calling ``data_check``, jitted
core) exercises the machinery in every composition with ``jit``, ``vmap``,
``grad`` and control flow; the real ops' data-dependent errors are checked
once each at the end, together with their documented unchecked results.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxops
from jaxops import _checks, _utils
from jaxops.testing import REGISTRY

MESSAGE = r"jaxops\.toy_take: index \(=7\) is out of range for an axis of size 4"
CHECKED_ERROR = checkify.JaxRuntimeError  # raised when the error is known after the run
RUNTIME_ERROR = jax.errors.JaxRuntimeError  # raised by the host callback under an outer jit


@functools.partial(jax.jit, static_argnames=())
def _toy_take_core(x, index):
    return jnp.take(x, index, mode="fill", fill_value=0.0)


def toy_take(x, index):
    """``x[index]`` along the only axis; out-of-range indices give 0 when unchecked."""
    _utils.check_array("toy_take", "index", index)
    x, index = jnp.asarray(x), jnp.asarray(index)
    n = x.shape[0]
    bad = jnp.argmax((index < 0) | (index >= n))
    _checks.data_check(
        lambda: jnp.all((index >= 0) & (index < n)),
        "toy_take",
        f"index (={{value}}) is out of range for an axis of size {n}",
        value=lambda: index.reshape(-1)[bad] if index.size else jnp.zeros((), index.dtype),
    )
    return _toy_take_core(x, index)


X = jnp.arange(4.0) + 1.0
GOOD = jnp.array([0, 3, 1])
BAD = jnp.array([0, 7, 1])


def loss(x, index):
    return jnp.sum(toy_take(x, index) ** 2)


def test_unchecked_never_raises_and_is_documented():
    np.testing.assert_array_equal(toy_take(X, BAD), [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(jax.jit(toy_take)(X, BAD), [1.0, 0.0, 2.0])


def test_eager():
    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        jaxops.checked(toy_take)(X, BAD)
    np.testing.assert_array_equal(jaxops.checked(toy_take)(X, GOOD), toy_take(X, GOOD))


def test_jit_inside():
    f = jaxops.checked(jax.jit(toy_take))
    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        f(X, BAD)
    np.testing.assert_array_equal(f(X, GOOD), [1.0, 4.0, 2.0])


def test_jit_outside_raises_at_run_time():
    f = jax.jit(jaxops.checked(toy_take))
    np.testing.assert_array_equal(f(X, GOOD), [1.0, 4.0, 2.0])
    with pytest.raises(RUNTIME_ERROR, match=MESSAGE):
        jax.block_until_ready(f(X, BAD))
    np.testing.assert_array_equal(f(X, GOOD), [1.0, 4.0, 2.0])  # still usable afterwards


def test_nested_checked_hands_errors_outward():
    f = jaxops.checked(jax.jit(jaxops.checked(toy_take)))
    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        f(X, BAD)
    # A bare checkify does not announce itself: the inner checked raises at run time.
    with pytest.raises(RUNTIME_ERROR, match=MESSAGE):
        jax.block_until_ready(checkify.checkify(jax.jit(jaxops.checked(toy_take)))(X, BAD))


@pytest.mark.parametrize("unchecked_first", [True, False])
def test_jit_cache_never_mixes_checked_and_unchecked_traces(unchecked_first):
    traces = []

    @jax.jit
    def f(x, index):
        traces.append(_checks.checks_enabled())
        return toy_take(x, index)

    def unchecked():
        np.testing.assert_array_equal(f(X, BAD), [1.0, 0.0, 2.0])  # no check, no error

    def checked():
        with pytest.raises(CHECKED_ERROR, match=MESSAGE):
            jaxops.checked(f)(X, BAD)  # the check is not missed
        np.testing.assert_array_equal(jaxops.checked(f)(X, GOOD), [1.0, 4.0, 2.0])

    for step in (
        (unchecked, checked, unchecked, checked)
        if unchecked_first
        else (checked, unchecked, checked, unchecked)
    ):
        step()
    assert sorted(traces) == [False, True]  # one trace per mode, each reused


def test_unchecked_traces_carry_no_effects():
    assert not jax.make_jaxpr(toy_take)(X, BAD).effects
    assert not jax.make_jaxpr(jax.jit(toy_take))(X, BAD).effects
    with _checks._enabled():
        assert jax.make_jaxpr(toy_take)(X, BAD).effects  # the check is there when enabled


def test_flag_is_scoped():
    seen = []

    def f(x, index):
        seen.append(_checks.checks_enabled())
        return toy_take(x, index)

    assert not _checks.checks_enabled()
    with pytest.raises(CHECKED_ERROR):
        jaxops.checked(f)(X, BAD)
    assert seen == [True] and not _checks.checks_enabled()
    _checks.data_check(jnp.array(False), "toy_take", "never raised outside checked")


def test_data_check_reduces_arrays_and_formats_values():
    def f(index):
        _checks.data_check(
            index >= 0, "toy", "got {v} and {w}", v=jnp.min(index), w=lambda: jnp.max(index)
        )
        return index

    with pytest.raises(CHECKED_ERROR, match=r"^jaxops\.toy: got -2 and 5"):
        jaxops.checked(f)(jnp.array([[1, -2], [5, 0]]))


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda f: jaxops.checked(jax.grad(f)), id="checked(grad)"),
        pytest.param(lambda f: jax.grad(jaxops.checked(f)), id="grad(checked)"),
        pytest.param(lambda f: jaxops.checked(jax.jit(jax.grad(f))), id="checked(jit(grad))"),
        pytest.param(lambda f: jaxops.checked(jax.hessian(f)), id="checked(hessian)"),
        pytest.param(
            lambda f: jaxops.checked(
                lambda x, i: jax.jvp(lambda y: f(y, i), (x,), (jnp.ones_like(x),))[1]
            ),
            id="checked(jvp)",
        ),
    ],
)
def test_differentiation(transform):
    g = transform(loss)
    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        g(X, BAD)
    expected = {
        jax.grad(loss)(X, GOOD).shape: jax.grad(loss)(X, GOOD),
        jax.hessian(loss)(X, GOOD).shape: jax.hessian(loss)(X, GOOD),
    }
    out = g(X, GOOD)
    if out.shape in expected:
        np.testing.assert_allclose(out, expected[out.shape])


def test_grad_outside_jit_raises_at_run_time():
    g = jax.jit(jax.grad(jaxops.checked(loss)))
    np.testing.assert_allclose(g(X, GOOD), jax.grad(loss)(X, GOOD))
    with pytest.raises(RUNTIME_ERROR, match=MESSAGE):
        jax.block_until_ready(g(X, BAD))


@pytest.mark.parametrize("inside", [True, False])
def test_vmap(inside):
    indices = jnp.stack([GOOD, BAD])
    f = (
        jaxops.checked(jax.vmap(toy_take, (None, 0)))
        if inside
        else jax.vmap(jaxops.checked(toy_take), (None, 0))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((CHECKED_ERROR, RUNTIME_ERROR), match=MESSAGE):
            jax.block_until_ready(f(X, indices))
    np.testing.assert_array_equal(f(X, jnp.stack([GOOD, GOOD])), jnp.stack([toy_take(X, GOOD)] * 2))


def test_control_flow():
    def scanned(x, indices):
        def body(carry, index):
            return carry + jnp.sum(toy_take(x, index)), None

        return jax.lax.scan(body, 0.0, indices)[0]

    def branched(x, index):
        return jax.lax.cond(jnp.sum(x) > 0, lambda: toy_take(x, index), lambda: jnp.zeros(3))

    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        jaxops.checked(scanned)(X, jnp.stack([GOOD, BAD]))
    assert jaxops.checked(scanned)(X, jnp.stack([GOOD, GOOD])) == 14.0
    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        jaxops.checked(jax.jit(branched))(X, BAD)
    assert scanned(X, jnp.stack([GOOD, BAD])) == 10.0  # unchecked: the fill value


def test_wrapper_keeps_metadata_and_non_array_arguments():
    f = jaxops.checked(jaxops.mse_loss)
    assert f.__name__ == "mse_loss" and f.__doc__ == jaxops.mse_loss.__doc__
    x, y = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
    np.testing.assert_array_equal(f(x, y, reduction="sum"), jaxops.mse_loss(x, y, reduction="sum"))


def test_trace_time_errors_are_unchanged_under_checked():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"^jaxops\.mse_loss: reduction \(='avg'\)"):
        jaxops.checked(jaxops.mse_loss)(x, x, reduction="avg")
    with pytest.raises(TypeError, match=r"^jaxops\.sigmoid: input must be an array"):
        jax.jit(jaxops.checked(jaxops.sigmoid))([1.0])


def test_basic_ops_under_checked_match_unchecked():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4))

    def f(x):
        return jaxops.mse_loss(jaxops.sigmoid(jaxops.flatten(x, 1)), jnp.zeros((2, 12)))

    for g in (jaxops.checked(f), jaxops.checked(jax.jit(f)), jax.jit(jaxops.checked(f))):
        np.testing.assert_allclose(g(x), f(x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(jaxops.checked(f))(x), jax.grad(f)(x), rtol=1e-6)


# ------------------------------------------------------- the ops' data-dependent errors


def _data_error_cases() -> list:
    """``pytest.param(info, data_error)`` for every ``OpInfo.data_errors`` entry of the registry."""
    return [
        pytest.param(info, err, id=info.name + (f"-{i}" if i else ""))
        for info in REGISTRY.values()
        for i, err in enumerate(info.data_errors)
    ]


def _call(err_sample):
    """The call's arguments, and its non-array positional arguments as jit's static argnums."""
    static = tuple(i for i, a in enumerate(err_sample.args) if not isinstance(a, np.ndarray))
    return err_sample.args, dict(err_sample.kwargs), static


def test_every_data_error_is_exercised():
    cases = _data_error_cases()
    assert len(cases) == sum(len(info.data_errors) for info in REGISTRY.values())
    assert len({c.id for c in cases}) == len(cases)
    assert cases, "no op declares a data-dependent error: the checks below would pass vacuously"


@pytest.mark.parametrize("info,err", _data_error_cases())
def test_data_dependent_errors_raise_under_checked(info, err):
    op, message, unchecked_ok = info.op, err.match, err.unchecked
    args, kwargs, static = _call(err.bad)
    assert unchecked_ok(np.asarray(op(*args, **kwargs))), (
        "unchecked result differs from the documented one"
    )
    assert unchecked_ok(
        np.asarray(jax.jit(functools.partial(op, **kwargs), static_argnums=static)(*args))
    )
    with pytest.raises(CHECKED_ERROR, match=message):
        jaxops.checked(op)(*args, **kwargs)
    with pytest.raises(CHECKED_ERROR, match=message):
        jaxops.checked(jax.jit(functools.partial(op, **kwargs), static_argnums=static))(*args)
    with pytest.raises(RUNTIME_ERROR, match=message[1:]):
        jax.block_until_ready(
            jax.jit(jaxops.checked(functools.partial(op, **kwargs)), static_argnums=static)(*args)
        )
    good_args, good_kwargs, _ = _call(err.good)
    np.testing.assert_array_equal(
        jaxops.checked(op)(*good_args, **good_kwargs), op(*good_args, **good_kwargs)
    )


@pytest.mark.parametrize("info,err", _data_error_cases())
def test_data_dependent_errors_under_grad_and_vmap(info, err):
    op, message = info.op, err.match
    (x, *rest), kwargs, _ = _call(err.bad)

    def loss(x):
        return jnp.nansum(op(x, *rest, **kwargs))

    with pytest.raises(CHECKED_ERROR, match=message):
        jaxops.checked(jax.grad(loss))(x)
    with pytest.raises(CHECKED_ERROR, match=message):
        jaxops.checked(jax.vmap(loss))(jnp.stack([x, x]))
    assert np.isfinite(jax.grad(loss)(x)).all() or not err.finite_grad  # unchecked: no error


def test_checked_compiles_once_per_signature():
    traces = []

    def f(x, index, scale=1.0):
        traces.append(scale)
        return toy_take(x, index) * scale

    g = jaxops.checked(f)
    for _ in range(3):
        np.testing.assert_array_equal(g(X, GOOD), [1.0, 4.0, 2.0])
    assert traces == [1.0]  # not re-traced (checkify alone re-traces and interprets every call)
    np.testing.assert_array_equal(
        g(X, GOOD, scale=2.0), [2.0, 8.0, 4.0]
    )  # non-array arguments are static
    np.testing.assert_array_equal(g(X, jnp.array([2])), [3.0])
    assert traces == [1.0, 2.0, 1.0]
    with pytest.raises(CHECKED_ERROR, match=MESSAGE):
        g(X, BAD)
    assert len(traces) == 3
    h = jaxops.checked(lambda x, index, opts: f(x, index, opts["scale"][0]))
    np.testing.assert_array_equal(
        h(X, GOOD, {"scale": [3.0]}), [3.0, 12.0, 6.0]
    )  # pytrees of static leaves
