"""The platform boundary: each op states its semantics once and picks a formulation per backend.

An op whose fastest formulation differs between backends writes both: a
*portable* one, built from the primitives XLA:GPU and XLA:TPU optimise
(convolutions, reductions, dots, elementwise code; no loops over rows, no
scatter where none is needed, no branch on the data), and one tuned by
measurement for XLA:CPU, which lives in :mod:`jaxops._cpu`. Both compute
exactly the op's specification (torch's products, tie and NaN rules,
rounding); they differ only in how XLA is asked to compute it.

:func:`choose` stages both out with ``lax.platform_dependent``: a jitted or
exported program carries each platform's branch, and lowering for one
platform keeps only its own (the ``case`` left behind has a constant index),
so XLA never compiles the other. Under :func:`portable_only` (public as
``jaxops.testing.portable``) ops trace the portable formulation alone, on any
backend, so CPU machines can check it against torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
from jax import lax

T = TypeVar("T")

# A user context is part of JAX's tracing, lowering and compilation cache keys, so
# a program traced under portable_only() is never reused outside it, nor the reverse.
_PORTABLE_ONLY = jax.make_user_context(default_value=False)


def choose(*args: Any, cpu: Callable[..., T], portable: Callable[..., T]) -> T:
    """``cpu(*args)`` on XLA:CPU, ``portable(*args)`` on every other backend.

    ``args`` are arrays (pytrees of arrays); static configuration is closed over.
    """
    if _PORTABLE_ONLY.value:
        return portable(*args)
    return lax.platform_dependent(*args, cpu=cpu, default=portable)


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within this context every op traces its portable formulation, on every backend."""
    with _PORTABLE_ONLY(True):
        yield


def is_portable_only() -> bool:
    return bool(_PORTABLE_ONLY.value)
