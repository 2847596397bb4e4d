"""Sample-building helpers shared by the registry modules (and by tests that build their own
inputs)."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from jaxops.testing.opinfo import ArgRef, SampleInput, Tol

EXACT = Tol(0.0, 0.0)

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e4, -1e4, 1e-30], np.float32)

# Half precision: torch and XLA both compute in float32 and round once, so the
# two may differ by one unit in the last place of the result.
HALF_TOL = {"float16": Tol(1e-3, 1e-3), "bfloat16": Tol(8e-3, 8e-3)}
HALF_DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def half_sample(dtype: str, args: tuple, kwargs: dict | None = None, *, name: str) -> SampleInput:
    """A sample in the half dtype ``dtype`` (a key of :data:`HALF_DTYPES`), compared at its
    :data:`HALF_TOL`, forward and gradient."""
    tol = HALF_TOL[dtype]
    return SampleInput(args, kwargs or {}, name=name, fwd_tol=tol, grad_tol=tol)


def randn(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    """Standard normal values of ``shape`` drawn from ``rng``, as ``dtype`` (float32)."""
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def batch_axis(*refs: ArgRef, ndim: int | None = None, min_ndim: int = 1):
    """``OpInfo.batch_args`` of an op whose arguments ``refs`` share a leading batch axis N
    whenever the first of them has ``ndim`` dimensions (``None``: at least ``min_ndim``)."""

    def batch_args(sample: SampleInput) -> tuple[ArgRef, ...]:
        n = sample.ndim(refs[0])
        return refs if (n == ndim if ndim is not None else n >= min_ndim) else ()

    return batch_args


def import_torch():
    """The ``torch`` module, imported on first use: the registry imports without torch installed."""
    import torch

    return torch
