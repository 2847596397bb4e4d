"""Building blocks for the OpInfo ``strategy`` functions (hypothesis), shared by every family.

Arrays are not drawn element by element: a strategy draws a shape, a seed, a
scale and which special values to plant, and NumPy builds the array from them.
Examples stay cheap to generate, and shrinking still reduces shapes, scales and
specials to the smallest failing configuration. ``hypothesis`` is a test
dependency, so it is imported only when a strategy is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np

# Values torch and XLA treat specially: planted into drawn arrays on request.
# No subnormals: XLA flushes them to zero on CPU and GPU and torch does not, a
# platform difference the README documents (weight=1e-40 gives 0/0 = NaN).
SPECIAL_VALUES = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-30)

FLOAT_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _st():
    from hypothesis import strategies as st

    return st


def shapes(ndim: int | tuple[int, int], min_side: int = 0, max_side: int = 5):
    """Shapes of ``ndim`` dims (or a ``(min, max)`` range of ranks), sides in
    ``[min_side, max_side]``.

    With ``min_side=0`` about one side in eight is empty; sides shrink towards 1.
    """
    st = _st()
    lo, hi = (ndim, ndim) if isinstance(ndim, int) else ndim
    if min_side == 0:
        side = st.integers(0, 7).map(lambda k: 0 if k == 7 else 1 + k % max_side)
    else:
        side = st.integers(min_side, max_side)
    return st.integers(lo, hi).flatmap(lambda n: st.tuples(*[side] * n))


def float_arrays(
    shape: Sequence[int] | Any,
    dtype: Any = np.float32,
    *,
    specials: bool | None = None,
    scales: Sequence[float] = (1.0, 0.01, 100.0),
):
    """Arrays of ``shape`` (a tuple or a strategy of tuples): seeded normals times a drawn scale.

    ``specials=None`` draws whether to plant special values (NaN, ±inf, ±0,
    huge, tiny) at a few random positions; ``True``/``False`` forces it.
    Quantized in ``dtype`` (NumPy or ml_dtypes).
    """
    st = _st()
    shape_st = shape if hasattr(shape, "example") else st.just(tuple(shape))
    plant_st = st.booleans() if specials is None else st.just(specials)

    def build(args):
        shape, seed, scale, plant = args
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape) * scale
        if plant and x.size:
            k = int(rng.integers(1, min(x.size, 4) + 1))
            flat = x.reshape(-1)
            flat[rng.choice(x.size, k, replace=False)] = rng.choice(SPECIAL_VALUES, k)
        with np.errstate(over="ignore"):  # 1e30 becomes inf in half precision, as intended
            return np.asarray(x, dtype=dtype)

    seeds, scale_st = st.integers(0, 2**32 - 1), st.sampled_from(tuple(scales))
    return st.tuples(shape_st, seeds, scale_st, plant_st).map(build)


def int_arrays(shape: Sequence[int] | Any, low: int, high: int, dtype: Any = np.int64):
    """Integer arrays of ``shape`` with values in ``[low, high)`` (seeded)."""
    st = _st()
    shape_st = shape if hasattr(shape, "example") else st.just(tuple(shape))
    return st.tuples(shape_st, st.integers(0, 2**32 - 1)).map(
        lambda a: np.random.default_rng(a[1]).integers(low, high, a[0]).astype(dtype)
    )


def broadcast_partner(shape: Sequence[int]):
    """Shapes that broadcast *into* ``shape``: leading dims dropped, some sides set to 1."""
    st = _st()
    shape = tuple(shape)

    def build(args):
        drop, ones = args
        kept = shape[drop:]
        return tuple(1 if i in ones else s for i, s in enumerate(kept))

    ones = st.sets(st.integers(0, max(len(shape) - 1, 0)))
    return st.tuples(st.integers(0, len(shape)), ones).map(build)
