"""Data-dependent checks, emitted only under :func:`jaxops.checked`.

Errors such as a class index out of range depend on array values, so they
cannot raise inside ``jit``. Ops call :func:`data_check` from their public
(traced) wrappers; it records a ``checkify`` check only while ``checked`` is
tracing, and is free otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
from jax.experimental import checkify

_ENABLED = contextvars.ContextVar("jaxops_checks_enabled", default=False)

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def _enabled() -> Iterator[None]:
    token = _ENABLED.set(True)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def checks_enabled() -> bool:
    return _ENABLED.get()


def data_check(predicate: jax.Array, op: str, message: str, **fmt: Any) -> None:
    """Asserts ``predicate`` (a boolean scalar array) when running under :func:`checked`.

    ``message`` may hold ``{name}`` fields filled with the runtime values in ``fmt``.
    """
    if checks_enabled():
        checkify.check(predicate, f"jaxops.{op}: {message}", **fmt)


def checked(fn: F) -> F:
    """Wraps ``fn`` so jaxops' data-dependent errors raise, as torch's do.

    Inside ``fn`` every jaxops op additionally checks the values that torch
    validates at run time (class indices, RoI batch indices, unpooling
    indices). The wrapper is built on ``jax.experimental.checkify``; it can be
    jitted (``jax.jit(jaxops.checked(f))``) and raises
    ``checkify.JaxRuntimeError`` naming the op and the offending value.

    Example:
        >>> safe_loss = jax.jit(jaxops.checked(jaxops.cross_entropy))
        >>> safe_loss(logits, jnp.array([0, 7]))  # 7 >= num classes: raises
    """
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _enabled():
            err, out = checkified(*args, **kwargs)
        err.throw()
        return out

    return wrapper  # type: ignore[return-value]
