"""Registry entries for max_pool2d, max_unpool2d and avg_pool2d."""

from __future__ import annotations

import dataclasses

import numpy as np

import jaxops
from jaxops.testing._common import (
    EXACT,
    HALF_DTYPES,
    HALF_TOL,
    batch_axis,
    half_sample,
    import_torch,
    randn,
)
from jaxops.testing.opinfo import DataError, ErrorInput, Lowering, OpInfo, SampleInput, Tol


def _F():
    return import_torch().nn.functional


def _ints(rng: np.random.Generator, *shape: int, lo: int = -3, hi: int = 4) -> np.ndarray:
    """Small integers as float32: plenty of ties inside windows."""
    return rng.integers(lo, hi, shape).astype(np.float32)


def _specials(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random values with NaN, +inf and -inf sprinkled in (several NaNs per window)."""
    x = randn(rng, *shape)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=(3, max(1, flat.size // 6)), replace=False)
    flat[picks[0]], flat[picks[1]], flat[picks[2]] = np.nan, np.inf, -np.inf
    return x


def _seeded_strategy(random_sample):
    """The hypothesis strategy of an op whose random samples come from ``random_sample(rng, name)``:
    hypothesis draws (and shrinks) the seed."""

    def strategy():
        import hypothesis.strategies as st

        @st.composite
        def draw(data):
            seed = data(st.integers(0, 2**31 - 1))
            return random_sample(np.random.default_rng(seed), f"fuzz {seed}")

        return draw()

    return strategy


# ---------------------------------------------------------------- max_pool2d

DEGENERATE = {
    "vjp": "torch's backward writes out of bounds (heap corruption) when a dilated "
    "window lies entirely in the padding; jaxops' gradient there is zero"
}


def _max_pool_samples(rng):
    def s(x, *args, name, **kwargs):
        return SampleInput((x,) + args, kwargs, name=name)

    for ri in (False, True):
        tag = " +indices" if ri else ""
        yield s(_ints(rng, 2, 3, 6, 7), 3, 2, 1, return_indices=ri, name=f"ties k3 s2 p1{tag}")
        yield s(
            _specials(rng, 2, 2, 7, 6), 3, 1, 1, return_indices=ri, name=f"nan/inf k3 s1 p1{tag}"
        )
        yield s(
            _ints(rng, 1, 2, 7, 9),
            (2, 3),
            (1, 2),
            (1, 0),
            (2, 1),
            ceil_mode=True,
            return_indices=ri,
            name=f"non-square everything, ceil{tag}",
        )
    yield s(
        np.ones((1, 2, 4, 5), np.float32), 2, 1, return_indices=True, name="all equal: first wins"
    )
    yield s(
        np.full((1, 1, 3, 4), -np.inf, np.float32),
        2,
        1,
        1,
        return_indices=True,
        name="all -inf with padding: first in-bounds element",
    )
    x = np.full((1, 1, 1, 5), np.nan, np.float32)
    x[0, 0, 0, 2] = 7.0
    yield s(x, (1, 3), 1, (0, 1), return_indices=True, name="all NaN but one: last NaN wins")
    yield s(
        randn(rng, 2, 3, 5, 5),
        2,
        2,
        1,
        ceil_mode=True,
        return_indices=True,
        name="ceil: last window starts in the left padding's grid, overhangs",
    )
    yield s(
        randn(rng, 1, 2, 6, 7), 3, 2, 1, ceil_mode=True, return_indices=True, name="ceil k3 s2 p1"
    )
    yield s(
        randn(rng, 1, 2, 5, 6),
        2,
        3,
        0,
        ceil_mode=True,
        return_indices=True,
        name="ceil, stride > kernel",
    )
    yield s(randn(rng, 2, 2, 9, 8), 3, 2, 1, 2, return_indices=True, name="dilation 2 with padding")
    yield s(
        randn(rng, 1, 2, 8, 10),
        (2, 3),
        (2, 1),
        (1, 1),
        (3, 2),
        ceil_mode=True,
        return_indices=True,
        name="dilation (3, 2), ceil",
    )
    yield SampleInput(
        (randn(rng, 2, 1, 2, 2), 2),
        {"dilation": 3, "padding": 1, "return_indices": True},
        name="dilated window entirely in padding",
        skip=DEGENERATE,
    )
    yield s(_ints(rng, 3, 7, 6), 3, 2, 1, return_indices=True, name="unbatched (C, H, W)")
    yield s(randn(rng, 3, 5, 4), 2, name="unbatched, values only")
    yield s(np.zeros((0, 3, 6, 5), np.float32), 3, 2, 1, return_indices=True, name="empty batch")
    yield s(randn(rng, 2, 2, 5, 7), (5, 7), return_indices=True, name="global pooling")
    yield s(randn(rng, 1, 2, 4, 5), 1, name="1x1 kernel")
    yield s(randn(rng, 1, 2, 6, 5), 2, None, name="stride None")
    yield s(randn(rng, 1, 2, 6, 5), (3, 2), (), name="stride ()")
    yield s(randn(rng, 1, 1, 9, 8), 7, 1, 3, return_indices=True, name="7x7 kernel, padding 3")
    yield s(
        rng.integers(-50, 50, (2, 2, 6, 5)).astype(np.int32),
        3,
        2,
        1,
        return_indices=True,
        name="int32",
    )
    for dtype, tol in HALF_TOL.items():
        x = _ints(rng, 2, 2, 6, 7).astype(HALF_DTYPES[dtype])
        yield SampleInput(
            (x, 3, 2, 1),
            {"return_indices": True},
            name=f"{dtype} ties",
            fwd_tol=EXACT,
            grad_tol=tol,
        )
    for i in range(8):
        yield _random_max_pool(rng, f"random {i}")


def _random_max_pool(rng, name):
    k = tuple(int(v) for v in rng.integers(1, 4, 2))
    st = tuple(int(v) for v in rng.integers(1, 4, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    ceil = bool(rng.integers(0, 2))
    hw = tuple(
        max(int(rng.integers(1, 9)), dd * (kk - 1) + 1 - 2 * pp) for kk, dd, pp in zip(k, d, p)
    )
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) + hw
    x = _ints(rng, *shape) if rng.integers(0, 2) else randn(rng, *shape)
    skip = DEGENERATE if _has_empty_window(hw, k, st, p, d, ceil) else {}
    return SampleInput(
        (x, k, st, p, d, ceil, bool(rng.integers(0, 2))),
        name=f"{name} {shape} k{k} s{st} p{p} d{d}{' ceil' if ceil else ''}",
        skip=skip,
    )


def _has_empty_window(hw, k, s, p, d, ceil) -> bool:
    """Whether one of torch's dilated windows of this configuration holds no input element.

    The windows are torch's: their number is the output size of torch's own forward pass
    (which is safe; only its backward corrupts memory), not a formula copied from the code
    under test.
    """
    out_hw = _F().max_pool2d(import_torch().zeros(1, 1, *hw), k, s, p, d, ceil_mode=ceil).shape[-2:]
    for n, out, kk, ss, pp, dd in zip(hw, out_hw, k, s, p, d):
        for o in range(out):
            start = o * ss - pp
            if not any(0 <= start + j * dd < n for j in range(kk)):
                return True
    return False


def _max_pool_ref(input, *args, **kwargs):
    return _F().max_pool2d(input, *args, **kwargs)


def _pool_arg_errors(op: str, fn_kwargs: dict):
    x = np.zeros((1, 2, 5, 5), np.float32)

    def e(args, kwargs, exc, match):
        return ErrorInput(SampleInput(args, {**fn_kwargs, **kwargs}), exc, match)

    yield e((x, 0), {}, ValueError, rf"jaxops\.{op}: kernel_size \(=0\) must be positive")
    yield e((x, (2, -1)), {}, ValueError, r"kernel_size \(=\(2, -1\)\) must be positive")
    yield e((x, 2, 0), {}, ValueError, r"stride \(=0\) must be positive")
    yield e((x, 2, (1, -2)), {}, ValueError, r"stride \(=\(1, -2\)\) must be positive")
    yield e((x, 2, 1, -1), {}, ValueError, r"padding \(=-1\) must be non-negative")
    yield e(
        (x, 3, 1, 2),
        {},
        ValueError,
        r"padding \(=\(2, 2\)\) must be at most half of kernel_size \(=\(3, 3\)\)",
    )
    yield e((x, (4, 2), 1, (1, 2)), {}, ValueError, r"padding \(=\(1, 2\)\) must be at most half")
    yield e((x, 6), {}, ValueError, r"output size 0x0 is too small: input size 5x5")
    yield e((x, (2, 2, 2)), {}, ValueError, r"kernel_size must be an int or a tuple of 2 ints")
    yield e((x, 2, (1, 1, 1)), {}, ValueError, r"stride must be an int or a tuple of 2 ints")
    yield e((x, 2.0), {}, TypeError, r"kernel_size must be an int, got 2\.0")
    yield e((x, 2, 1, 0.5), {}, TypeError, r"padding must be an int, got 0\.5")
    yield e(
        (np.zeros((5, 5), np.float32), 2),
        {},
        ValueError,
        r"input must have 3 \(C, H, W\) or 4 \(N, C, H, W\) dimensions, got shape \(5, 5\)",
    )
    yield e(
        (np.zeros((1, 1, 1, 5, 5), np.float32), 2),
        {},
        ValueError,
        r"must have 3 .* or 4 .* dimensions, got shape \(1, 1, 1, 5, 5\)",
    )
    yield e(
        (np.zeros((1, 0, 5, 5), np.float32), 2),
        {},
        ValueError,
        r"non-zero channel and spatial sizes .* got shape \(1, 0, 5, 5\)",
    )
    yield e(
        (np.zeros((2, 0, 5), np.float32), 2),
        {},
        ValueError,
        r"non-zero channel and spatial sizes .* got shape \(2, 0, 5\)",
    )
    yield e(
        (np.zeros((0, 5, 5), np.float32), 2), {}, ValueError, r"non-zero channel and spatial sizes"
    )
    yield e(
        (np.zeros((1, 1, 4, 4), np.bool_), 2),
        {},
        TypeError,
        r"input must have a real floating or integer dtype, got bool",
    )
    yield e(([[[1.0]]], 1), {}, TypeError, r"input must be an array, got list")


def _max_pool_errors():
    x = np.zeros((1, 2, 5, 5), np.float32)
    yield from _pool_arg_errors("max_pool2d", {})
    yield ErrorInput(
        SampleInput((x, 2, 1, 0, 0)),
        ValueError,
        r"jaxops\.max_pool2d: dilation \(=0\) must be positive",
    )
    yield ErrorInput(
        SampleInput((x, 2), {"dilation": (1, -1)}),
        ValueError,
        r"dilation \(=\(1, -1\)\) must be positive",
    )
    yield ErrorInput(
        SampleInput((x, 3), {"dilation": 3}),
        ValueError,
        r"output size 0x0 is too small: input size 5x5, kernel_size=\(3, 3\), "
        r"stride=\(3, 3\), padding=\(0, 0\), dilation=\(3, 3\)",
    )


# ---------------------------------------------------------------- max_unpool2d


def _pool_indices(x, k, s, p):
    y, i = _F().max_pool2d(import_torch().from_numpy(x), k, s, p, return_indices=True)
    return y.numpy(), i.numpy()


def _values_at(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Values that are a function of their index (``table[n, c, idx]``), so that repeated
    indices carry equal values, as they do coming from an overlapping max_pool2d.

    torch's unpooling kernel writes in parallel over all elements: for repeated
    indices with different values its result depends on thread scheduling.
    """
    n, c = idx.shape[:2]
    return np.take_along_axis(table, idx.reshape(n, c, idx[0, 0].size if n else 0), axis=2).reshape(
        idx.shape
    )


def _random_unpool(rng, name, dtype=np.float32):
    k = tuple(int(v) for v in rng.integers(1, 4, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    hw = tuple(int(v) for v in rng.integers(1, 5, 2))
    default = [(n - 1) * ss + kk - 2 * pp for n, kk, ss, pp in zip(hw, k, s, p)]
    if min(default) < 1:  # keep the output non-empty: drop the padding
        p = (0, 0)
        default = [(n - 1) * ss + kk for n, kk, ss in zip(hw, k, s)]
    out, kwargs = default, {}
    if rng.integers(0, 2):  # an explicit size strictly within stride of the default
        out = [int(rng.integers(max(d - ss + 1, 1), d + ss)) for d, ss in zip(default, s)]
        kwargs["output_size"] = out if rng.integers(0, 2) else [9, 9] + out
    shape = (int(rng.integers(0, 3)), int(rng.integers(1, 3))) + hw
    idx = rng.integers(0, out[0] * out[1], shape).astype(np.int64)  # repeats included
    x = _values_at(randn(rng, shape[0], shape[1], out[0] * out[1]), idx).astype(dtype)
    return SampleInput(
        (x, idx, k, s, p), kwargs, name=f"{name} {shape} k{k} s{s} p{p} {kwargs or ''}"
    )


# Repeated indices (overlapping windows) write one value but send the cotangent to each.
REPEATED_INDICES_HVP = (
    "max_unpool2d at repeated indices: the gradient is torch's (every repeat receives the "
    "cotangent), not the derivative of the forward (one repeat is written); documented in its Note"
)


def _has_repeated_indices(indices: np.ndarray) -> bool:
    """Whether some (N, C) plane of max_unpool2d's indices names a position twice."""
    h, w = np.shape(indices)[-2:]
    return any(len(np.unique(p)) < len(p) for p in np.asarray(indices).reshape(-1, h * w))


def _max_unpool_samples(rng):
    for s in _unpool_samples(rng):
        yield (
            dataclasses.replace(s, xfail={"hvp": REPEATED_INDICES_HVP})
            if _has_repeated_indices(s.args[1])
            else s
        )


def _unpool_samples(rng):
    x = randn(rng, 2, 3, 6, 8)
    y, i = _pool_indices(x, 2, 2, 0)
    yield SampleInput((y, i, 2), name="inverts max_pool2d k2 (no repeats)")
    yield SampleInput((y, i, 2), {"output_size": (7, 9)}, name="explicit larger output_size")
    yield SampleInput((y, i, 2), {"output_size": [2, 3, 7, 8]}, name="output_size with 4 entries")
    x = _ints(rng, 2, 2, 7, 9)
    y, i = _pool_indices(x, 3, 2, 1)
    yield SampleInput((y, i, 3, 2, 1), name="inverts k3 s2 p1 (overlapping: repeated indices)")
    yield SampleInput(
        (y, i, 3, 2, 1), {"output_size": (7, 9)}, name="k3 s2 p1 back to the input size"
    )
    x = randn(rng, 1, 2, 7, 8)
    y, i = _pool_indices(x, (2, 3), (1, 2), (1, 0))
    yield SampleInput(
        (y, i, (2, 3), (1, 2), (1, 0), (7, 8)), name="non-square kernel, stride, padding"
    )
    yield SampleInput(
        (y[0], i[0], (2, 3), (1, 2), (1, 0)), {"output_size": (7, 8)}, name="unbatched (C, H, W)"
    )
    yield SampleInput(
        (np.zeros((0, 2, 3, 3), np.float32), np.zeros((0, 2, 3, 3), np.int64), 2),
        name="empty batch",
    )
    vals = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    rep = np.array([[[[0, 0], [5, 0]]]], np.int64)
    yield SampleInput(
        (vals, rep, 2),
        name="repeats with different values: gradient to each",
        skip={
            "forward": "torch writes repeated indices in parallel: the value kept "
            "depends on thread scheduling (jaxops keeps the last)"
        },
    )
    idx = rng.integers(0, 48, (1, 2, 3, 4))
    yield SampleInput(
        (_values_at(_specials(rng, 1, 2, 48), idx), idx, 2, 2),
        {"output_size": (6, 8)},
        name="nan/inf values",
    )
    yield SampleInput(
        (randn(rng, 1, 1, 1, 1), np.zeros((1, 1, 1, 1), np.int64), 2, 2, 1),
        name="empty output plane (0x0)",
        skip={"vjp": "torch's backward raises (index 0 out of bounds) for an empty output plane"},
    )
    idx = rng.integers(0, 36, (1, 2, 3, 3))
    yield SampleInput(
        (_values_at(randn(rng, 1, 2, 36), idx), idx, 2, None), name="stride None (random indices)"
    )
    for dtype, _tol in HALF_TOL.items():
        s = _random_unpool(rng, dtype, HALF_DTYPES[dtype])
        yield SampleInput(s.args, s.kwargs, name=s.name, fwd_tol=EXACT, grad_tol=EXACT)
    for n in range(8):
        yield _random_unpool(rng, f"random {n}")


def _max_unpool_ref(input, indices, *args, **kwargs):
    return _F().max_unpool2d(input, indices.long(), *args, **kwargs)


def _max_unpool_errors():
    x = np.zeros((1, 2, 3, 3), np.float32)
    i = np.zeros((1, 2, 3, 3), np.int64)

    def e(args, kwargs, exc, match):
        return ErrorInput(SampleInput(args, kwargs), exc, match)

    yield e(
        (x, i.astype(np.float32), 2),
        {},
        TypeError,
        r"jaxops\.max_unpool2d: indices must have an integer dtype, got float32",
    )
    yield e(
        (x, i[..., :2], 2),
        {},
        ValueError,
        r"indices shape \(1, 2, 3, 2\) must equal input shape \(1, 2, 3, 3\)",
    )
    yield e((x[0, 0], i[0, 0], 2), {}, ValueError, r"input must have 3 \(C, H, W\) or 4")
    yield e((x[:, :0], i[:, :0], 2), {}, ValueError, r"non-zero channel and spatial sizes")
    yield e(
        (x.astype(np.int32), i, 2), {}, TypeError, r"input must have a floating dtype, got int32"
    )
    yield e((x, i, 0), {}, ValueError, r"kernel_size \(=0\) must be positive")
    yield e((x, i, 2, 0), {}, ValueError, r"stride \(=0\) must be positive")
    yield e((x, i, 2, 2, -1), {}, ValueError, r"padding \(=-1\) must be non-negative")
    yield e(
        (x, i, 2),
        {"output_size": (6, 6, 6)},
        ValueError,
        r"output_size must have 2 or 4 elements, got 3",
    )
    yield e(
        (x, i, 2),
        {"output_size": (6, 8)},
        ValueError,
        r"output_size \(=\(6, 8\)\) is invalid: dim 1 must be strictly between 4 and 8",
    )
    yield e(
        (x, i, 2),
        {"output_size": 6},
        TypeError,
        r"output_size must be a sequence of 2 or 4 ints, got 6",
    )
    yield e(
        (x[:, :, :1, :1], i[:, :, :1, :1], 1, 1, 1),
        {},
        ValueError,
        r"output size \(=\(-1, -1\)\) must be non-negative",
    )
    yield e((x, [[0]], 2), {}, TypeError, r"indices must be an array, got list")


_UNPOOL_VALUES = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)


def _unpool_indices(index: int) -> np.ndarray:
    return np.array([[[[0, index], [9, 15]]]])


MAX_UNPOOL_DATA_ERRORS = (
    DataError(
        bad=SampleInput((_UNPOOL_VALUES, _unpool_indices(99), 2), name="index 99 of a 4x4 output"),
        good=SampleInput((_UNPOOL_VALUES, _unpool_indices(3), 2), name="indices in range"),
        match=r"^jaxops\.max_unpool2d: .*index 99\b",
        # Unchecked, the out-of-range index is dropped (2.0 is lost), the others land.
        unchecked=lambda out: (
            out.reshape(-1)[[0, 9, 15]].tolist() == [1.0, 3.0, 4.0] and out.sum() == 8.0
        ),
    ),
)


# ---------------------------------------------------------------- avg_pool2d


def _random_avg_pool(rng, name):
    k = tuple(int(v) for v in rng.integers(1, 5, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    hw = tuple(max(int(rng.integers(1, 9)), kk - 2 * pp) for kk, pp in zip(k, p))
    shape = (int(rng.integers(0, 3)), int(rng.integers(1, 3))) + hw
    kwargs = {"ceil_mode": bool(rng.integers(0, 2)), "count_include_pad": bool(rng.integers(0, 2))}
    if rng.integers(0, 4) == 0:
        kwargs["divisor_override"] = int(rng.choice([-3, 1, 2, 5]))
    return SampleInput(
        (randn(rng, *shape), k, s, p), kwargs, name=f"{name} {shape} k{k} s{s} p{p} {kwargs}"
    )


def _avg_pool_samples(rng):
    for cip in (True, False):
        for ceil in (False, True):
            yield SampleInput(
                (randn(rng, 2, 2, 7, 6), 3, 2, 1),
                {"ceil_mode": ceil, "count_include_pad": cip},
                name=f"k3 s2 p1 ceil={ceil} count_include_pad={cip}",
            )
            yield SampleInput(
                (randn(rng, 1, 2, 5, 9), (2, 4), (3, 2), (1, 2)),
                {"ceil_mode": ceil, "count_include_pad": cip},
                name=f"non-square, overhang ceil={ceil} count_include_pad={cip}",
            )
    for d in (1, 3, -2):
        yield SampleInput(
            (randn(rng, 1, 2, 6, 5), 3, 2, 1),
            {"divisor_override": d, "ceil_mode": True},
            name=f"divisor_override={d}",
        )
    yield SampleInput((_specials(rng, 2, 2, 6, 7), 2, 1, 1), name="nan/inf")
    yield SampleInput(
        (randn(rng, 3, 7, 6), 3, 1, 1), {"count_include_pad": False}, name="unbatched (C, H, W)"
    )
    yield SampleInput((np.zeros((0, 2, 6, 5), np.float32), 3, 2, 1), name="empty batch")
    yield SampleInput((randn(rng, 2, 3, 5, 7), (5, 7)), name="global pooling")
    yield SampleInput((randn(rng, 1, 2, 4, 5), 1), name="1x1 kernel")
    yield SampleInput((randn(rng, 1, 2, 6, 5), 2, None), name="stride None")
    yield SampleInput((randn(rng, 1, 2, 6, 5), (3, 2), ()), name="stride ()")
    yield SampleInput(
        (randn(rng, 1, 1, 9, 8), 7, 1, 3),
        {"count_include_pad": False},
        name="7x7 kernel, padding 3",
    )
    yield SampleInput(
        (rng.integers(-20, 20, (2, 2, 5, 6)), 2, 1, 1),
        {"count_include_pad": False},
        name="int64: truncating division",
    )
    for dtype, half in HALF_DTYPES.items():
        x = randn(rng, 2, 2, 6, 7).astype(half)
        yield half_sample(dtype, (x, 3, 2, 1), {"count_include_pad": False}, name=dtype)
    for i in range(8):
        yield _random_avg_pool(rng, f"random {i}")


def _avg_pool_ref(input, *args, **kwargs):
    return _F().avg_pool2d(input, *args, **kwargs)


def _avg_pool_errors():
    x = np.zeros((1, 2, 5, 5), np.float32)
    yield from _pool_arg_errors("avg_pool2d", {})
    yield ErrorInput(
        SampleInput((x, 2), {"divisor_override": 0}),
        ValueError,
        r"jaxops\.avg_pool2d: divisor_override \(=0\) must not be zero",
    )
    yield ErrorInput(
        SampleInput((x, 2), {"divisor_override": 1.5}),
        TypeError,
        r"divisor_override must be an int, got 1\.5",
    )


OPS = [
    OpInfo(
        name="max_pool2d",
        op=jaxops.max_pool2d,
        ref=_max_pool_ref,
        sample_inputs=_max_pool_samples,
        error_inputs=_max_pool_errors,
        formula="out[n,c,i,j] = max_{a,b} x_pad[n,c, s*i + d*a, s*j + d*b]; first max, last NaN",
        batch_args=batch_axis(0, ndim=4),
        # Values and indices are copies of input elements: exact. Gradients are
        # the cotangent scattered (summed where windows share their argmax) in the
        # same order as torch's loop: exact too.
        fwd_tol=EXACT,
        grad_tol=EXACT,
        torch_name="torch.nn.functional.max_pool2d",
        strategy=_seeded_strategy(_random_max_pool),
    ),
    OpInfo(
        name="max_unpool2d",
        op=jaxops.max_unpool2d,
        ref=_max_unpool_ref,
        sample_inputs=_max_unpool_samples,
        error_inputs=_max_unpool_errors,
        grad_args=(0,),
        vmap_args=(0, 1),
        batch_args=batch_axis(0, 1, ndim=4),
        data_errors=MAX_UNPOOL_DATA_ERRORS,
        formula="out[n,c].flat[indices[n,c,i,j]] = x[n,c,i,j]; zeros elsewhere",
        # A scatter of values and a gather of cotangents: no arithmetic, exact.
        fwd_tol=EXACT,
        grad_tol=EXACT,
        torch_name="torch.nn.functional.max_unpool2d",
        lowering=Lowering(
            scatter={
                "fwd": "unpooling writes each value at an index of the data, as torch's kernel does"
            }
        ),
        strategy=_seeded_strategy(_random_unpool),
    ),
    OpInfo(
        name="avg_pool2d",
        op=jaxops.avg_pool2d,
        ref=_avg_pool_ref,
        sample_inputs=_avg_pool_samples,
        error_inputs=_avg_pool_errors,
        formula="out = sum_window(x_pad) / divisor (override | clipped window | in-bounds count)",
        batch_args=batch_axis(0, ndim=4),
        # Window sums of at most 49 terms in a different order than torch's.
        fwd_tol=Tol(1e-5, 1e-6),
        grad_tol=Tol(1e-5, 1e-6),
        torch_name="torch.nn.functional.avg_pool2d",
        strategy=_seeded_strategy(_random_avg_pool),
    ),
]
