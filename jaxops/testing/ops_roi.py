"""Registry entries for roi_pool and roi_align (torchvision references)."""

from __future__ import annotations

import numpy as np

import jaxops
from jaxops.testing._common import EXACT, batch_axis, randn
from jaxops.testing.opinfo import DataError, ErrorInput, Lowering, OpInfo, SampleInput, Tol


def _random_rois(rng, k, n, lo, hi, min_size=0.0, max_size=None, dtype=np.float32):
    max_size = max_size if max_size is not None else hi - lo
    xy = rng.uniform(lo, hi, (k, 2))
    wh = rng.uniform(min_size, max_size, (k, 2))
    idx = rng.integers(0, n, (k, 1))
    return np.concatenate([idx, xy, xy + wh], 1).astype(dtype)


def _map_with_specials(rng, shape):
    x = randn(rng, *shape)
    x[0, 0, 1, 2] = np.nan
    x[0, 0, 0, 0] = np.inf  # what out-of-map roi_align samples read (times 0)
    x[-1, -1, 2, 1] = -np.inf
    x[0, 1, -1, -1] = np.inf  # the clamped bottom-right corner
    x[-1, 0, 3, 3] = np.nan
    return x


def _ties_map(rng, shape):
    return rng.integers(-2, 3, shape).astype(np.float32)  # many equal values


# Corner boxes shared by both ops (map 8 x 9, scale 1): half-integer coordinates
# (C round half away from zero), RoIs outside the map, zero-area and reversed RoIs,
# overlapping RoIs (gradients accumulate), boxes touching the map edge.
CORNER_BOXES = np.array(
    [
        [0, 0.5, 0.5, 4.5, 3.5],  # .5 everywhere: rounds up
        [1, -0.5, -1.5, 2.5, 6.5],  # negative .5: rounds away from zero
        [0, 1.0, 1.0, 6.0, 5.0],  # overlaps the first
        [0, 1.0, 1.0, 6.0, 5.0],  # duplicate RoI: gradient doubles
        [1, 20.0, 20.0, 30.0, 25.0],  # entirely outside
        [0, -9.0, -9.0, -3.0, -2.0],  # outside, negative side
        [1, 3.0, 2.0, 3.0, 2.0],  # zero area
        [0, 5.0, 6.0, 2.0, 1.0],  # reversed (x2 < x1)
        [1, 0.0, 0.0, 8.0, 7.0],  # the whole map and beyond the edge
        [0, -2.0, 4.0, 12.0, 9.5],  # straddles three edges
        [1.9, 2.0, 3.0, 4.0, 4.0],  # batch index truncates to 1
    ],
    np.float32,
)


def _shared_samples(rng, extra, skip=()):
    """Samples common to both ops; ``extra`` gives per-sample keyword variants (the
    first is used for the corner maps, the others cycle through the other samples)."""
    x = randn(rng, 2, 3, 8, 9)
    for kw in extra:
        yield SampleInput((x, CORNER_BOXES, (3, 2)), dict(kw), name=f"corners {kw}")
    cycle = iter(extra[1:] * 4 if len(extra) > 1 else extra * 8)
    yield SampleInput(
        (_map_with_specials(rng, (2, 3, 8, 9)), CORNER_BOXES, 3), dict(extra[0]), name="nan/inf map"
    )
    ties = _ties_map(rng, (2, 2, 8, 9))
    if "ties" not in skip:
        yield SampleInput((ties, CORNER_BOXES, (2, 3)), dict(extra[0]), name="ties")
    for scale in (0.5, 1 / 16, 0.3):
        b = _random_rois(rng, 9, 2, -4 / scale, 10 / scale, max_size=8 / scale)
        b[:, 1:] = np.round(b[:, 1:] * 2) / 2  # many .5 coordinates after scaling by 0.5
        yield SampleInput(
            (randn(rng, 2, 2, 7, 10), b, (4, 3), scale),
            dict(next(cycle)),
            name=f"scale {scale:.4g}",
        )
    lists = [
        _random_rois(rng, 3, 1, -2, 9)[:, 1:],
        np.zeros((0, 4), np.float32),
        _random_rois(rng, 2, 1, 0, 9)[:, 1:],
    ]
    yield SampleInput((randn(rng, 3, 2, 6, 7), lists, 2), dict(next(cycle)), name="list of boxes")
    yield SampleInput((randn(rng, 2, 2, 5, 5), np.zeros((0, 5), np.float32), 3), name="K = 0")
    empty = randn(rng, 1, 2, 5, 6)
    if "empty list entry" not in skip:
        yield SampleInput((empty, [np.zeros((0, 4), np.float32)], (2, 1)), name="empty list entry")
    yield SampleInput(
        (
            randn(rng, 1, 1, 1, 1),
            np.array([[0, -1, -1, 2, 2], [0, 0, 0, 0, 0]], np.float32),
            (3, 2),
        ),
        dict(next(cycle)),
        name="1x1 map",
    )
    # One seeded random configuration (the hypothesis strategy fuzzes the rest).
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    scale = float(rng.choice([1.0, 0.5, 0.25, 0.125, 0.37]))
    size = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    b = _random_rois(
        rng, int(rng.integers(1, 8)), n, -3 / scale, (w + 3) / scale, max_size=(w + 2) / scale
    )
    yield SampleInput(
        (randn(rng, n, c, h, w), b, size, scale),
        dict(next(cycle)),
        name=f"random {(n, c, h, w)} out={size}",
    )


def _pool_samples(rng):
    yield from _shared_samples(rng, [{}])
    x = randn(rng, 1, 2, 6, 6)
    x[0, 0] = -np.inf
    x[0, 1, :3] = np.nan
    x[0, 1, 3:] = -3.4028235e38  # == -FLT_MAX: never strictly greater than the start value
    yield SampleInput(
        (x, np.array([[0, 0, 0, 5, 5], [0, 0, 3, 5, 5]], np.float32), 2),
        name="all -inf / NaN / -FLT_MAX bins",
    )


def _align_samples(rng):
    # Adaptive / fixed / zero (adaptive) sampling ratio, aligned both ways.
    variants = [
        {},
        {"sampling_ratio": 2},
        {"sampling_ratio": 0, "aligned": True},
        {"sampling_ratio": 3, "aligned": True},
    ]
    # Ties only matter to a max; the list-with-empty-entry path is shared with roi_pool.
    yield from _shared_samples(rng, variants, skip=("ties", "empty list entry"))
    yield SampleInput(
        (_map_with_specials(rng, (2, 3, 8, 9)), CORNER_BOXES, (3, 2)),
        {"sampling_ratio": 2, "aligned": True},
        name="nan/inf map, ratio 2, aligned",
    )
    big = np.array([[0, -40, -30, 90, 70], [0, 2, 2, 3.5, 3]], np.float32)
    yield SampleInput(
        (randn(rng, 1, 2, 7, 6), big, 2, 1.0, -1, False), name="huge RoI (adaptive grid 10x)"
    )


def _pool_ref(input, boxes, output_size, spatial_scale=1.0):
    import torchvision

    return torchvision.ops.roi_pool(input, boxes, output_size, spatial_scale)


def _align_ref(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    import torchvision

    return torchvision.ops.roi_align(
        input, boxes, output_size, spatial_scale, sampling_ratio, aligned
    )


def _errors(name):
    x = np.zeros((2, 3, 5, 5), np.float32)
    b = np.array([[0, 0, 0, 2, 2]], np.float32)
    op = rf"jaxops\.{name}: "
    yield ErrorInput(
        SampleInput((x, b[:, 1:], 2)),
        ValueError,
        op + r"boxes must be a \(K, 5\) array or a list of \(L, 4\) arrays, got shape \(1, 4\)",
    )
    yield ErrorInput(SampleInput((x, b[0], 2)), ValueError, r"got shape \(5,\)")
    yield ErrorInput(
        SampleInput((x, [b], 2)),
        ValueError,
        op + r"boxes\[0\] must have shape \(L, 4\), got \(1, 5\)",
    )
    yield ErrorInput(
        SampleInput((x[0], b, 2)),
        ValueError,
        op + r"input must have 4 dimensions, got shape \(3, 5, 5\)",
    )
    yield ErrorInput(
        SampleInput((x, b, 0)), ValueError, op + r"output_size \(=0\) must be positive"
    )
    yield ErrorInput(
        SampleInput((x, b, (2, -1))), ValueError, r"output_size \(=\(2, -1\)\) must be positive"
    )
    yield ErrorInput(
        SampleInput((x, b.astype(np.float16), 2)),
        TypeError,
        op + r"boxes dtype \(float16\) must equal input dtype \(float32\)",
    )
    yield ErrorInput(
        SampleInput((x, [b[:, 1:].astype(np.float16)], 2)),
        TypeError,
        r"boxes\[0\] dtype \(float16\) must equal",
    )
    yield ErrorInput(
        SampleInput((x.astype(np.int32), b.astype(np.int32), 2)),
        TypeError,
        op + r"input must have a floating dtype, got int32",
    )
    yield ErrorInput(SampleInput((x, b, 2.5)), TypeError, r"output_size must be an int, got 2\.5")
    yield ErrorInput(
        SampleInput((x, b, 2, "1")), TypeError, r"spatial_scale must be a Python float, got str"
    )
    yield ErrorInput(SampleInput((x, None, 2)), TypeError, r"boxes must be an array, got NoneType")
    if name == "roi_align":
        yield ErrorInput(
            SampleInput((x, b, 2), {"sampling_ratio": 1.5}),
            TypeError,
            r"sampling_ratio must be an int, got 1\.5",
        )
        yield ErrorInput(
            SampleInput((x, b, 2), {"aligned": "yes"}),
            TypeError,
            r"aligned must be a bool, got 'yes'",
        )
        yield ErrorInput(
            SampleInput((x, b, 2), {"precision": "fastest"}),
            TypeError,
            op + r"precision must be None, a lax\.Precision",
        )


_MAP = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)


def _boxes(index: float) -> np.ndarray:
    return np.array([[0.0, 0.0, 0.0, 2.0, 2.0], [index, 1.0, 1.0, 3.0, 3.0]], np.float32)


def _second_roi_nan(out: np.ndarray) -> bool:
    """Unchecked, the RoI with the out-of-range batch index is NaN, the others are computed."""
    return bool(np.isfinite(out[0]).all() and np.isnan(out[1]).all())


ROI_POOL_DATA_ERRORS = (
    DataError(
        bad=SampleInput((_MAP, _boxes(2.0), 2), name="batch index 2 of 2"),
        good=SampleInput(
            (_MAP, _boxes(1.9), 2), name="batch index 1.9 (torchvision truncates it to 1)"
        ),
        match=r"^jaxops\.roi_pool: .*batch index \(=2",
        unchecked=_second_roi_nan,
    ),
)
ROI_ALIGN_DATA_ERRORS = (
    DataError(
        bad=SampleInput((_MAP, _boxes(-1.0), 2), {"sampling_ratio": 2}, name="batch index -1"),
        good=SampleInput(
            (_MAP, _boxes(-0.5), 2), {"sampling_ratio": 2}, name="batch index -0.5 (truncates to 0)"
        ),
        match=r"^jaxops\.roi_align: .*batch index \(=-1",
        unchecked=_second_roi_nan,
    ),
)

# torchvision's rule, kept: a float32 map with float16 boxes is a TypeError, not promoted.
BOXES_DTYPE = {
    "mixed_dtypes": (
        "raises TypeError 'boxes dtype must equal input dtype' (torchvision's rule) "
        "instead of promoting"
    ),
}


def _strategy(align):
    def strategy():
        from hypothesis import strategies as st

        @st.composite
        def draw(d):
            n, c = d(st.integers(1, 2)), d(st.integers(1, 3))
            h, w = d(st.integers(1, 9)), d(st.integers(1, 9))
            k = d(st.integers(0, 5))
            scale = d(st.sampled_from([1.0, 0.5, 0.25, 1 / 16, 0.3]))
            size = (d(st.integers(1, 4)), d(st.integers(1, 4)))
            seed = d(st.integers(0, 2**31 - 1))
            rng = np.random.default_rng(seed)
            x = randn(rng, n, c, h, w)
            if d(st.booleans()):
                x[tuple(rng.integers(0, s) for s in x.shape)] = d(
                    st.sampled_from([np.nan, np.inf, -np.inf])
                )
            boxes = _random_rois(
                rng, k, n, -3 / scale, (max(h, w) + 3) / scale, max_size=(max(h, w) + 2) / scale
            )
            if d(st.booleans()):
                boxes[:, 1:] = np.round(boxes[:, 1:] * 2) / 2
            kwargs = {}
            if align:
                kwargs = {"sampling_ratio": d(st.integers(-1, 3)), "aligned": d(st.booleans())}
            if d(st.booleans()):
                lists = [boxes[boxes[:, 0] == i, 1:] for i in range(n)]
                return SampleInput((x, lists, size, scale), kwargs, name="fuzz list")
            return SampleInput((x, boxes, size, scale), kwargs, name="fuzz")

        return draw()

    return strategy


def _roi_op(op, **fields) -> OpInfo:
    """The entry of the RoI op ``op``: its own ``fields``, and what the two ops share. The map
    is differentiable (boxes are not, as in torchvision), batches of maps and of box sets both
    vmap, boxes keep their dtype; one generator makes the error inputs and one the hypothesis
    strategy of both ops, given the op's name."""
    name = op.__name__
    return OpInfo(
        name=name,
        op=op,
        error_inputs=lambda: _errors(name),
        grad_args=(0,),
        vmap_args=(0, 1),
        batch_args=batch_axis(0, ndim=4),
        dtype_deviations=BOXES_DTYPE,
        strategy=_strategy(align=name == "roi_align"),
        **fields,
    )


OPS = [
    _roi_op(
        jaxops.roi_pool,
        ref=_pool_ref,
        sample_inputs=_pool_samples,
        formula="out[k,c,i,j] = max over bin (first max wins, NaN never)",
        # A max moves values, computes none; the gradient sums at most a few cotangents.
        fwd_tol=EXACT,
        grad_tol=Tol(1e-6, 1e-6),
        data_errors=ROI_POOL_DATA_ERRORS,
        torch_name="torchvision.ops.roi_pool",
        lowering=Lowering(
            scatter={
                "grad": "overlapping RoIs meet at their argmax: the gradient accumulates there "
                "(torchvision's backward is an atomicAdd too)"
            }
        ),
    ),
    _roi_op(
        jaxops.roi_align,
        ref=_align_ref,
        sample_inputs=_align_samples,
        formula="out = mean over samples of bilinear(x, s) = My X Mx^T / count",
        # Sums of up to a few hundred bilinear terms, in a different order from torchvision's.
        fwd_tol=Tol(1e-5, 1e-6),
        grad_tol=Tol(1e-5, 1e-6),
        data_errors=ROI_ALIGN_DATA_ERRORS,
        torch_name="torchvision.ops.roi_align",
    ),
]
