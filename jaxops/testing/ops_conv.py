"""Registry entries for conv2d and conv_transpose2d.

The two ops share their sample machinery: one builder draws the input, the bias
and the weight (``_sample``); one driver draws the seeded random configurations
(groups, channels, kernel, batch, bias) and one the hypothesis ones, each asking
the op only for its own arguments. What differs is the weight's layout
(``transposed``) and the corner tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import jaxops
from jaxops.conv import PADDING_MODES
from jaxops.testing._common import batch_axis, import_torch, randn
from jaxops.testing.opinfo import ErrorInput, Lowering, OpInfo, SampleInput, Tol

# ---------------------------------------------------------------- shared by both ops


def _with_specials(x: np.ndarray) -> np.ndarray:
    """Puts NaN, +inf and -inf at fixed interior and border positions of ``x``."""
    x = x.copy()
    flat = x.reshape(-1)
    flat[[0, flat.size // 3, flat.size // 2]] = [np.nan, np.inf, -np.inf]
    return x


def _weight_shape(
    transposed: bool, groups: int, c_in: int, c_mult: int, k: tuple[int, int]
) -> tuple:
    """conv2d's weight is (out, in / groups, kH, kW); conv_transpose2d's
    (in, out / groups, kH, kW)."""
    return (c_in, c_mult, *k) if transposed else (groups * c_mult, c_in // groups, *k)


def _out_channels(transposed: bool, w_shape: tuple, groups: int) -> int:
    return w_shape[1] * groups if transposed else w_shape[0]


def _sample(
    rng, transposed, x_shape, w_shape, name, bias=True, specials=False, **kwargs
) -> SampleInput:
    """``(input, weight, bias=..., **kwargs)``, drawn in that order: input, bias, weight."""
    x = randn(rng, *x_shape)
    if specials:
        x = _with_specials(x)
    if bias:
        kwargs = {
            "bias": randn(rng, _out_channels(transposed, w_shape, kwargs.get("groups", 1))),
            **kwargs,
        }
    return SampleInput((x, randn(rng, *w_shape)), kwargs, name=name)


def _sample_inputs(transposed, corners, count, op_args):
    """The op's ``sample_inputs``: its enumerated ``corners`` (rows of input shape, weight
    shape, name, keyword arguments), then ``count`` seeded random configurations."""

    def sample_inputs(rng):
        for x_shape, w_shape, name, kwargs in corners:
            yield _sample(rng, transposed, x_shape, w_shape, name, **kwargs)
        yield from _random_samples(rng, transposed, count, op_args)

    return sample_inputs


def _random_samples(rng, transposed, count, op_args):
    """``count`` seeded random configurations. Drawn here: groups, channels and kernel size,
    then (after the op's own arguments) the batch size; every third input is unbatched
    (C, H, W) and every other call has a bias. ``op_args(rng, i, k, groups) -> (hw, kwargs,
    tag)`` draws the op's arguments in its keyword order and an input size that fits them."""
    for i in range(count):
        groups = int(rng.choice([1, 1, 2, 3]))
        c_in, c_mult = groups * int(rng.integers(1, 4)), int(rng.integers(1, 3))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        hw, kwargs, tag = op_args(rng, i, k, groups)
        n = int(rng.integers(1, 3))
        x_shape = (n, c_in, *hw) if i % 3 else (c_in, *hw)
        w_shape = _weight_shape(transposed, groups, c_in, c_mult, k)
        yield _sample(
            rng,
            transposed,
            x_shape,
            w_shape,
            f"random {x_shape} k{k} {tag}",
            bias=bool(i % 2),
            **kwargs,
        )


def _strategy(transposed, op_args):
    """The hypothesis strategy: as ``_random_samples``, with ``op_args(draw, st, k, groups) ->
    (hw, kwargs)`` and smaller sizes; the batch may be empty and the bias is None half the time."""

    def strategy():
        from hypothesis import strategies as st

        @st.composite
        def draw(draw_):
            groups = draw_(st.sampled_from([1, 2]))
            c_in, c_mult = groups * draw_(st.integers(1, 2)), draw_(st.integers(1, 2))
            k = (draw_(st.integers(1, 3)), draw_(st.integers(1, 3)))
            hw, kwargs = op_args(draw_, st, k, groups)
            n = draw_(st.integers(0, 2))
            rng = np.random.default_rng(draw_(st.integers(0, 2**31)))
            x_shape = (n, c_in, *hw) if draw_(st.booleans()) else (c_in, *hw)
            w_shape = _weight_shape(transposed, groups, c_in, c_mult, k)
            bias = (
                randn(rng, _out_channels(transposed, w_shape, groups))
                if draw_(st.booleans())
                else None
            )
            args = (randn(rng, *x_shape), randn(rng, *w_shape))
            return SampleInput(args, {"bias": bias, **kwargs}, name="hypothesis")

        return draw()

    return strategy


def _error_builder(op: str):
    def e(args, kwargs, error, match):
        return ErrorInput(SampleInput(args, kwargs), error, rf"jaxops\.{op}: " + match)

    return e


def _module_call(module, weight, bias, args, kwargs=None):
    """Calls a torch module with our tensors as its parameters (for arguments only modules take)."""
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    return import_torch().func.functional_call(module, params, args, kwargs)


# ---------------------------------------------------------------- conv2d


def _conv2d_ref(
    input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
):
    torch = import_torch()
    if padding_mode == "zeros":
        return torch.nn.functional.conv2d(input, weight, bias, stride, padding, dilation, groups)
    # nn.Conv2d is the only torch API with padding_mode.
    module = torch.nn.Conv2d(
        input.shape[-3],
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride,
        padding,
        dilation,
        groups,
        bias=bias is not None,
        padding_mode=padding_mode,
    )
    return _module_call(module, weight, bias, (input,))


# (input shape, weight shape, name, keyword arguments)
_Corner = tuple[tuple[int, ...], tuple[int, ...], str, dict[str, Any]]
_CONV2D_CORNERS: tuple[_Corner, ...] = (
    ((2, 3, 7, 8), (4, 3, 3, 3), "3x3 padding 1", {"padding": 1}),
    (
        (2, 3, 9, 7),
        (5, 3, 3, 2),
        "stride (2,1), padding (1,0), dilation (1,2)",
        {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)},
    ),
    (
        (1, 2, 11, 10),
        (3, 2, 4, 3),
        "stride 3x2 non-square, kernel 4x3",
        {"stride": (3, 2), "padding": 2},
    ),
    (
        (1, 2, 10, 9),
        (3, 2, 5, 4),
        "stride 2, dilation 3 (phases of mixed size)",
        {"stride": 2, "dilation": 3, "padding": (3, 4)},
    ),
    ((1, 2, 8, 9), (3, 2, 1, 1), "1x1 stride 3 (skips rows)", {"stride": 3}),
    ((2, 2, 5, 6), (3, 2, 5, 6), "kernel = input: 1x1 output", {}),
    ((2, 3, 7, 6), (4, 3, 3, 3), "'same', odd kernel", {"padding": "same"}),
    (
        (2, 3, 7, 6),
        (4, 3, 4, 2),
        "'same', even kernel, dilation (1,3): asymmetric",
        {"padding": "same", "dilation": (1, 3)},
    ),
    ((2, 3, 7, 6), (4, 3, 3, 2), "'valid'", {"padding": "valid"}),
    ((2, 4, 7, 8), (6, 2, 3, 3), "groups 2", {"padding": 1, "groups": 2}),
    ((2, 6, 7, 8), (6, 2, 3, 2), "groups 3 strided", {"stride": 2, "padding": 1, "groups": 3}),
    ((2, 4, 7, 8), (4, 1, 3, 3), "depthwise", {"padding": 1, "groups": 4}),
    (
        (2, 3, 9, 8),
        (6, 1, 3, 2),
        "depthwise x2 multiplier, stride 2, dilation 2",
        {"stride": 2, "dilation": 2, "padding": (2, 1), "groups": 3},
    ),
    (
        (2, 3, 7, 8),
        (3, 1, 3, 3),
        "depthwise 'same', dilation 2",
        {"padding": "same", "dilation": 2, "groups": 3},
    ),
    *(
        (
            (2, 3, 6, 7),
            (4, 3, 3, 2),
            f"{mode} padding (2,1)",
            {"padding": (2, 1), "padding_mode": mode},
        )
        for mode in PADDING_MODES[1:]
    ),
    (
        (1, 2, 5, 6),
        (4, 1, 3, 3),
        "reflect 'same' depthwise x2",
        {"padding": "same", "groups": 2, "padding_mode": "reflect"},
    ),
    (
        (2, 4, 6, 5),
        (4, 2, 2, 3),
        "circular stride 2 groups 2",
        {"stride": 2, "padding": 1, "groups": 2, "padding_mode": "circular"},
    ),
    (
        (2, 4, 6, 5),
        (4, 2, 2, 3),
        "replicate stride (1,2) groups 2",
        {"stride": (1, 2), "padding": (0, 2), "groups": 2, "padding_mode": "replicate"},
    ),
    (
        (1, 2, 4, 5),
        (3, 2, 3, 3),
        "reflect at its limit (padding = size - 1)",
        {"padding": (3, 4), "padding_mode": "reflect"},
    ),
    (
        (1, 2, 3, 4),
        (3, 2, 3, 3),
        "circular at its limit (padding = size)",
        {"padding": (3, 4), "padding_mode": "circular"},
    ),
    ((3, 5, 6), (4, 3, 3, 3), "unbatched", {"padding": 1}),
    (
        (4, 6, 5),
        (4, 2, 2, 2),
        "unbatched groups 2 reflect",
        {"padding": 1, "groups": 2, "padding_mode": "reflect"},
    ),
    ((0, 3, 5, 6), (4, 3, 3, 3), "empty batch", {"padding": 1}),
    (
        (0, 3, 5, 6),
        (6, 1, 3, 3),
        "empty batch depthwise circular",
        {"padding": 1, "groups": 3, "padding_mode": "circular"},
    ),
    ((2, 3, 6, 7), (4, 3, 3, 3), "nan/inf input", {"specials": True, "padding": 1}),
    (
        (2, 3, 6, 7),
        (3, 1, 3, 3),
        "nan/inf input depthwise strided",
        {"specials": True, "stride": 2, "padding": 1, "groups": 3},
    ),
    (
        (2, 3, 9, 7),
        (4, 3, 3, 2),
        "nan/inf input strided reflect",
        {"specials": True, "stride": (2, 3), "padding": 1, "padding_mode": "reflect"},
    ),
)


def _conv2d_random_args(rng, i, k, groups):
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    mode = PADDING_MODES[i % 4]
    if i % 5 == 4:
        stride, padding = (1, 1), "same"
    else:
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
    pads = (0, 0) if padding == "same" else padding
    hw = tuple(
        int(max(d * (kk - 1) + 1 - 2 * p, p + 1, 2) + rng.integers(0, 5))
        for d, kk, p in zip(dilation, k, pads)
    )
    kwargs = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": mode,
    }
    return hw, kwargs, f"s{stride} p{padding} d{dilation} g{groups} {mode}"


def _conv2d_errors():
    x = np.zeros((2, 4, 5, 6), np.float32)
    w = np.zeros((6, 2, 3, 3), np.float32)
    w4 = np.zeros((6, 4, 3, 3), np.float32)
    e = _error_builder("conv2d")
    yield e(
        (x, np.zeros((6, 3, 3, 3), np.float32)),
        {"groups": 2},
        ValueError,
        r"input has 4 channels but weight of shape \(6, 3, 3, 3\) with groups=2 expects 6",
    )
    yield e(
        (x, np.zeros((5, 2, 3, 3), np.float32)),
        {"groups": 2},
        ValueError,
        r"weight's out channels \(=5\) must be divisible by groups \(=2\)",
    )
    yield e(
        (x, w, np.zeros(5, np.float32)),
        {"groups": 2},
        ValueError,
        r"bias must have shape \(6,\).*got \(5,\)",
    )
    yield e(
        (x, w, np.zeros((6, 1), np.float32)),
        {"groups": 2},
        ValueError,
        r"bias must have shape \(6,\)",
    )
    yield e(
        (x, np.zeros((6, 4, 3), np.float32)),
        {},
        ValueError,
        r"weight must have 4 dimensions, got shape \(6, 4, 3\)",
    )
    yield e(
        (np.zeros((5, 6), np.float32), w4),
        {},
        ValueError,
        r"input must have 3 or 4 dimensions, got shape \(5, 6\)",
    )
    yield e((x[None], w4), {}, ValueError, r"input must have 3 or 4 dimensions")
    yield e(
        (x, np.zeros((6, 4, 7, 3), np.float32)),
        {},
        ValueError,
        r"kernel size \(7, 3\) with dilation \(1, 1\) spans \(7, 3\), "
        r"larger than the padded input \(5, 6\)",
    )
    yield e(
        (x, w4),
        {"dilation": 3},
        ValueError,
        r"kernel size \(3, 3\) with dilation \(3, 3\) spans \(7, 7\), "
        r"larger than the padded input \(5, 6\)",
    )
    yield e((x, w4), {"stride": 0}, ValueError, r"stride \(=0\) must be positive")
    yield e((x, w4), {"stride": (1, -2)}, ValueError, r"stride \(=\(1, -2\)\) must be positive")
    yield e((x, w4), {"dilation": 0}, ValueError, r"dilation \(=0\) must be positive")
    yield e((x, w4), {"groups": 0}, ValueError, r"groups \(=0\) must be positive")
    yield e((x, w4), {"padding": -1}, ValueError, r"padding \(=-1\) must be non-negative")
    yield e(
        (x, w4),
        {"padding": "same", "stride": 2},
        ValueError,
        r"padding='same' is not supported for strided convolutions \(stride=\(2, 2\)\)",
    )
    yield e(
        (x, w4),
        {"padding": "full"},
        ValueError,
        r"padding \(='full'\) must be one of 'valid', 'same'",
    )
    yield e(
        (x, w4),
        {"padding_mode": "constant"},
        ValueError,
        r"padding_mode \(='constant'\) must be one of 'zeros', 'reflect', 'replicate', 'circular'",
    )
    yield e(
        (x, w4),
        {"padding": 5, "padding_mode": "reflect"},
        ValueError,
        r"reflect padding \(\(5, 5\), \(5, 5\)\) must be smaller than "
        r"the input's spatial size \(5, 6\)",
    )
    yield e(
        (np.zeros((2, 4, 3, 6), np.float32), w4),
        {"padding": "same", "dilation": 3, "padding_mode": "reflect"},
        ValueError,
        r"reflect padding \(\(3, 3\), \(3, 3\)\) must be smaller than "
        r"the input's spatial size \(3, 6\)",
    )
    yield e(
        (x, w4),
        {"padding": 6, "padding_mode": "circular"},
        ValueError,
        r"circular padding \(\(6, 6\), \(6, 6\)\) must not exceed "
        r"the input's spatial size \(5, 6\)",
    )
    yield e(
        (x, w4), {"stride": (1, 2, 3)}, ValueError, r"stride must be an int or a tuple of 2 ints"
    )
    yield e((x, w4), {"stride": 1.5}, TypeError, r"stride must be an int, got 1\.5")
    yield e(
        (np.zeros((2, 4, 0, 6), np.float32), w4),
        {"padding": 1},
        ValueError,
        r"input spatial size must be non-empty, got input of shape \(2, 4, 0, 6\)",
    )
    yield e(
        (x, np.zeros((6, 4, 0, 3), np.float32)),
        {},
        ValueError,
        r"kernel size \(=\(0, 3\)\) must be positive",
    )
    yield e(
        (x, np.zeros((0, 4, 3, 3), np.float32)),
        {},
        ValueError,
        r"weight must have at least one output channel",
    )
    yield e(
        (np.zeros((2, 4, 5, 6), np.int32), w4),
        {},
        TypeError,
        r"input must have a floating dtype, got int32",
    )
    yield e(
        (x, np.zeros((6, 4, 3, 3), np.int32)),
        {},
        TypeError,
        r"weight must have a floating dtype, got int32",
    )
    yield e((x.tolist(), w4), {}, TypeError, r"input must be an array, got list")


def _conv2d_strategy_args(draw, st, k, groups):
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(PADDING_MODES))
    same = draw(st.booleans())
    stride = (1, 1) if same else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = "same" if same else (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    pads = [(d * (kk - 1)) // 2 + 1 for d, kk in zip(dilation, k)] if same else padding
    hw = [
        max(d * (kk - 1) + 1, p + 1) + draw(st.integers(0, 3))
        for d, kk, p in zip(dilation, k, pads)
    ]
    return hw, {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": mode,
    }


# ---------------------------------------------------------------- conv_transpose2d


def _conv_transpose2d_ref(
    input,
    weight,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
    output_size=None,
):
    torch = import_torch()
    if output_size is None:
        return torch.nn.functional.conv_transpose2d(
            input, weight, bias, stride, padding, output_padding, groups, dilation
        )
    # output_size is an argument of nn.ConvTranspose2d.forward only.
    module = torch.nn.ConvTranspose2d(
        weight.shape[0],
        weight.shape[1] * groups,
        tuple(weight.shape[2:]),
        stride,
        padding,
        groups=groups,
        bias=bias is not None,
        dilation=dilation,
    )
    return _module_call(module, weight, bias, (input,), {"output_size": output_size})


# (input shape, weight shape, name, keyword arguments)
_CONV_TRANSPOSE2D_CORNERS: tuple[_Corner, ...] = (
    ((2, 3, 5, 6), (3, 4, 3, 3), "3x3", {}),
    ((2, 3, 5, 6), (3, 4, 3, 3), "no bias, padding 1", {"bias": False, "padding": 1}),
    ((2, 4, 5, 4), (4, 3, 4, 4), "k4 s2 p1 (upsampling x2)", {"stride": 2, "padding": 1}),
    (
        (2, 4, 5, 4),
        (4, 3, 3, 3),
        "k3 s2 p1 output_padding 1",
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    (
        (1, 2, 4, 5),
        (2, 3, 3, 2),
        "stride (3,2) output_padding (2,1), non-square",
        {"stride": (3, 2), "padding": (1, 0), "output_padding": (2, 1)},
    ),
    (
        (1, 2, 4, 5),
        (2, 3, 3, 3),
        "output_padding 1 < dilation 2 (stride 1)",
        {"dilation": 2, "output_padding": 1},
    ),
    (
        (1, 2, 4, 5),
        (2, 3, 2, 3),
        "padding 0, output_padding 1: negative high pad of the conv",
        {"stride": 2, "output_padding": 1},
    ),
    (
        (1, 2, 6, 5),
        (2, 2, 3, 4),
        "stride 2 dilation 3, mixed phases",
        {"stride": 2, "dilation": 3, "padding": (2, 1)},
    ),
    ((1, 2, 3, 3), (2, 3, 3, 3), "padding 2: 1x1 output", {"padding": 2}),
    ((2, 4, 5, 6), (4, 3, 3, 3), "groups 2", {"groups": 2, "stride": 2, "padding": 1}),
    ((2, 6, 4, 5), (6, 1, 3, 2), "groups 3, one output channel each", {"groups": 3, "padding": 1}),
    (
        (2, 4, 4, 5),
        (4, 1, 3, 3),
        "depthwise (forward conv is depthwise), stride 2",
        {"groups": 4, "stride": 2, "padding": 1, "output_padding": 1},
    ),
    (
        (2, 4, 5, 4),
        (4, 1, 3, 3),
        "depthwise-transposed x2: 2 inputs per output channel",
        {"groups": 2, "padding": 1, "dilation": 2},
    ),
    (
        (2, 3, 5, 6),
        (3, 2, 3, 3),
        "output_size (H, W)",
        {"stride": 2, "padding": 1, "output_size": (10, 12)},
    ),
    (
        (2, 3, 5, 6),
        (3, 2, 3, 3),
        "output_size full shape",
        {"stride": (2, 3), "output_size": [2, 2, 12, 19]},
    ),
    (
        (3, 5, 6),
        (3, 2, 3, 3),
        "unbatched output_size (C, H, W)",
        {"stride": 2, "output_size": (2, 11, 14)},
    ),
    ((3, 5, 6), (3, 4, 2, 3), "unbatched", {"stride": 2}),
    ((0, 3, 5, 6), (3, 4, 3, 3), "empty batch", {"stride": 2, "padding": 1}),
    ((2, 3, 5, 6), (3, 4, 3, 3), "nan/inf input", {"specials": True, "padding": 1}),
    (
        (2, 3, 5, 6),
        (3, 4, 4, 3),
        "nan/inf input strided",
        {"specials": True, "stride": 2, "padding": 1},
    ),
    (
        (2, 4, 5, 6),
        (4, 1, 3, 3),
        "nan/inf input depthwise strided",
        {"specials": True, "stride": 2, "groups": 4},
    ),
)


def _transpose_min_size(hw, padding, dilation, k, output_padding, stride):
    """Input sizes raised until the output is at least one element along each axis."""
    return [
        max(h, (2 * p - d * (kk - 1) - op) // s + 2)
        for h, p, d, kk, op, s in zip(hw, padding, dilation, k, output_padding, stride)
    ]


def _conv_transpose2d_random_args(rng, i, k, groups):
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    padding = tuple(int(v) for v in rng.integers(0, 3, 2))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    hw = tuple(int(rng.integers(1, 6)) for _ in range(2))
    hw = tuple(_transpose_min_size(hw, padding, dilation, k, output_padding, stride))
    kwargs = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
    }
    return hw, kwargs, f"s{stride} p{padding} op{output_padding} d{dilation} g{groups}"


def _conv_transpose2d_errors():
    x = np.zeros((2, 4, 5, 6), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    e = _error_builder("conv_transpose2d")
    yield e(
        (x, np.zeros((5, 3, 3, 3), np.float32)),
        {},
        ValueError,
        r"input has 4 channels but weight of shape \(5, 3, 3, 3\) expects 5",
    )
    yield e(
        (x, w),
        {"groups": 3},
        ValueError,
        r"weight's in channels \(=4\) must be divisible by groups \(=3\)",
    )
    yield e(
        (x, w, np.zeros(4, np.float32)), {}, ValueError, r"bias must have shape \(3,\).*got \(4,\)"
    )
    yield e(
        (x, w, np.zeros(3, np.float32)),
        {"groups": 2},
        ValueError,
        r"bias must have shape \(6,\).*got \(3,\)",
    )
    yield e((x, np.zeros((4, 3, 3), np.float32)), {}, ValueError, r"weight must have 4 dimensions")
    yield e((x[0, 0], w), {}, ValueError, r"input must have 3 or 4 dimensions, got shape \(5, 6\)")
    yield e((x, w), {"stride": 0}, ValueError, r"stride \(=0\) must be positive")
    yield e((x, w), {"dilation": (1, 0)}, ValueError, r"dilation \(=\(1, 0\)\) must be positive")
    yield e((x, w), {"groups": 0}, ValueError, r"groups \(=0\) must be positive")
    yield e((x, w), {"padding": -1}, ValueError, r"padding \(=-1\) must be non-negative")
    yield e(
        (x, w), {"output_padding": -1}, ValueError, r"output_padding \(=-1\) must be non-negative"
    )
    yield e((x, w), {"padding": "same"}, TypeError, r"padding must be an int, got 'same'")
    yield e(
        (x, w),
        {"stride": 2, "output_padding": 2},
        ValueError,
        r"output_padding \(=\(2, 2\)\) must be smaller than either stride \(=\(2, 2\)\) "
        r"or dilation \(=\(1, 1\)\)",
    )
    yield e(
        (x, w),
        {"dilation": 2, "output_padding": (0, 2)},
        ValueError,
        r"output_padding \(=\(0, 2\)\) must be smaller than either stride",
    )
    yield e(
        (x, np.zeros((4, 3, 1, 1), np.float32)),
        {"padding": 3},
        ValueError,
        r"output spatial size \(-1, 0\) must be positive",
    )
    yield e(
        (x, w),
        {"stride": 2, "output_size": (13, 13)},
        ValueError,
        r"requested an output size of \(13, 13\), "
        r"but valid sizes range from \(11, 13\) to \(12, 14\)",
    )
    yield e(
        (x, w),
        {"stride": 2, "output_size": (10, 13)},
        ValueError,
        r"requested an output size of \(10, 13\)",
    )
    yield e(
        (x, w),
        {"stride": 2, "output_size": (1, 12, 13)},
        ValueError,
        r"output_size must have 2 or 4 elements for a 4-d input",
    )
    yield e(
        (x, w),
        {"stride": 2, "output_size": (12, 13), "output_padding": 1},
        ValueError,
        r"pass output_size .* or output_padding .*, not both",
    )
    yield e(
        (x, w), {"output_size": 12}, TypeError, r"output_size must be a sequence of ints, got 12"
    )
    yield e(
        (x.astype(np.int64), w), {}, TypeError, r"input must have a floating dtype, got int(32|64)"
    )
    yield e((x, None), {}, TypeError, r"weight must be an array, got NoneType")
    yield e(
        (np.zeros((2, 4, 5, 0), np.float32), w),
        {},
        ValueError,
        r"input spatial size must be non-empty",
    )
    yield e(
        (x, np.zeros((4, 3, 3, 0), np.float32)),
        {},
        ValueError,
        r"kernel size \(=\(3, 0\)\) must be positive",
    )


def _conv_transpose2d_strategy_args(draw, st, k, groups):
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    hw = _transpose_min_size(
        [draw(st.integers(1, 4)) for _ in range(2)], padding, dilation, k, output_padding, stride
    )
    return hw, {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
    }


# What the two convolutions share: their differentiable arguments, batch axis,
# tolerances and GPU/TPU lowering.
_SHARED = dict(
    grad_args=(0, 1, "bias"),
    batch_args=batch_axis(0, ndim=4),
    # Sums of up to ~100 (forward) and ~1000 (weight gradient) float32 products of
    # unit-variance terms, accumulated in a different order than torch's kernels.
    fwd_tol=Tol(1e-5, 1e-5),
    grad_tol=Tol(1e-5, 3e-5),
    lowering=Lowering(convolution=True),
)

OPS = [
    OpInfo(
        name="conv2d",
        op=jaxops.conv2d,
        ref=_conv2d_ref,
        sample_inputs=_sample_inputs(False, _CONV2D_CORNERS, 8, _conv2d_random_args),
        error_inputs=_conv2d_errors,
        formula="out[n,o] = b[o] + sum_c w[o,c] * pad(x)[n,c] (strided, dilated, grouped)",
        torch_name="torch.nn.functional.conv2d / nn.Conv2d(padding_mode)",
        **_SHARED,
        strategy=_strategy(False, _conv2d_strategy_args),
    ),
    OpInfo(
        name="conv_transpose2d",
        op=jaxops.conv_transpose2d,
        ref=_conv_transpose2d_ref,
        sample_inputs=_sample_inputs(
            True, _CONV_TRANSPOSE2D_CORNERS, 7, _conv_transpose2d_random_args
        ),
        error_inputs=_conv_transpose2d_errors,
        formula="out = vjp_x(conv2d(x, w, pad=(p, p - output_padding)))(input) + b",
        torch_name="torch.nn.functional.conv_transpose2d / nn.ConvTranspose2d(output_size)",
        **_SHARED,
        strategy=_strategy(True, _conv_transpose2d_strategy_args),
    ),
]
