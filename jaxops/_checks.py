"""Data-dependent checks, emitted only under :func:`jaxops.checked`.

Errors such as a class index out of range depend on array values, so they
cannot raise inside ``jit``. Ops call :func:`data_check` from their public
(traced) wrappers; it records a ``checkify`` check only while ``checked`` is
tracing, and is free otherwise.

Design (why the flag is a JAX user context and not a Python context variable):

* The flag is read at trace time, so every trace cache that may hold a trace of
  a jaxops op must be keyed on it: a ``jax.jit`` traced once without checks and
  then called under ``checked`` would otherwise replay the check-free trace
  (checks silently missed), and a trace made under ``checked`` replayed outside
  it would carry checks nobody functionalizes. JAX keys its caches (``jit``,
  initial-style control flow, lowering) on the values of the contexts made by
  ``jax.make_user_context``; the flag is such a context, so the two kinds of
  traces never mix.
* Checks are emitted as ``checkify.debug_check``: functionalized by
  ``checkify`` (hence by ``checked``) and dropped, never an error, anywhere
  else. Outside ``checked`` nothing at all is emitted, so unchecked traces stay
  free of effects (``custom_jvp``, ``checkpoint``, ``export`` are unaffected).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

F = TypeVar("F", bound=Callable[..., Any])

# A user context: JAX folds its value into its tracing, lowering and jit cache keys.
_ENABLED = jax.make_user_context(default_value=False)


def checks_enabled() -> bool:
    """True while :func:`checked` traces: ops then emit their data-dependent checks."""
    return bool(_ENABLED.value)


def _enabled() -> Any:
    return _ENABLED(True)


def data_check(
    predicate: jax.Array | bool | Callable[[], Any], op: str, message: str, **fmt: Any
) -> None:
    """Asserts ``predicate`` (true where the data are valid) under :func:`checked`.

    Call it from an op's public wrapper, not from its jitted core. Outside
    :func:`checked` it does nothing and emits nothing.

    Args:
        predicate: a boolean array (reduced with ``all``), or a zero-argument
            callable returning one, evaluated only when checks are enabled (use
            it when the predicate costs work).
        op: the op's public name; the error reads ``jaxops.<op>: <message>``.
        message: may hold ``{name}`` fields filled with the run-time values in
            ``fmt`` (arrays, or zero-argument callables returning them).
    """
    if not checks_enabled():
        return
    if callable(predicate):
        predicate = predicate()
    values = {k: jnp.asarray(v() if callable(v) else v) for k, v in fmt.items()}
    checkify.debug_check(jnp.all(jnp.asarray(predicate)), f"jaxops.{op}: {message}", **values)


def _raise_error(err: checkify.Error) -> None:
    err.throw()


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


def checked(fn: F) -> F:
    """Wraps ``fn`` so jaxops' data-dependent errors raise, as torch's do.

    Inside ``fn`` every jaxops op additionally checks the values that torch
    validates at run time (class indices, RoI batch indices, unpooling
    indices). Built on ``jax.experimental.checkify``:

    * ``jaxops.checked(f)(...)`` compiles ``f`` with its checks (once per
      signature, like ``jax.jit``: array arguments are traced, every other
      argument is static), runs it, then raises ``checkify.JaxRuntimeError``
      (a ``ValueError``) whose message starts with ``jaxops.<op>:`` and names
      the offending value. ``f`` may itself be jitted. Functions jitted inside
      ``f`` are traced separately for checked and unchecked calls, so a trace
      never carries checks into, or misses them from, the other mode.
    * ``jax.jit(jaxops.checked(f))`` (jit outside) raises when the compiled
      computation runs, through a host callback: the error surfaces as
      ``jax.errors.JaxRuntimeError`` whose message contains the same text.
      Nested in another ``checked`` the errors are handed to the outer one,
      which raises them as above.
    * ``grad``, ``vmap`` and ``jvp`` may be applied inside or outside.

    Ahead-of-time compiled or exported functions keep whatever they were
    traced with: compile or export inside ``checked`` to keep the checks.

    Args:
        fn: any function calling jaxops ops.

    Returns:
        A function with ``fn``'s signature and outputs.

    Example:
        >>> safe_loss = jaxops.checked(jaxops.cross_entropy)
        >>> safe_loss(logits, jnp.array([0, 7]))  # 7 >= num classes: raises
    """
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def compiled(treedef: Any, static: tuple[Any, ...], *arrays: Any) -> Any:
        it = iter(arrays)
        leaves = [next(it) if leaf is _ARRAY else leaf for leaf in static]
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        return checkified(*args, **kwargs)

    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # checkify re-traces and interprets fn eagerly on every call; compiling
        # it (cached on the signature, the static arguments and the check flag)
        # costs one dispatch instead.
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        static = tuple(_ARRAY if _is_array(leaf) else leaf for leaf in leaves)
        try:
            hash(static)
        except TypeError:  # an unhashable non-array argument: interpret instead
            return checkified(*args, **kwargs)
        return compiled(treedef, static, *[leaf for leaf in leaves if _is_array(leaf)])

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = checks_enabled()
        with _enabled():
            err, out = run(args, kwargs)
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(err)):
            err.throw()
        elif outer:
            checkify.check_error(err)  # functionalized by the enclosing checked()
        else:
            jax.debug.callback(_raise_error, err)  # raises when the traced computation runs
        return out

    return wrapper  # type: ignore[return-value]


class _ArrayMarker:
    """Stands for an array argument in the static part of a call's signature."""

    def __repr__(self) -> str:
        return "<array>"


_ARRAY = _ArrayMarker()
