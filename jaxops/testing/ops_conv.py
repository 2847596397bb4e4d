"""Registry entries for conv2d and conv_transpose2d."""

from __future__ import annotations

import numpy as np

import jaxops
from jaxops.testing._common import batch_axis, import_torch, randn
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput, Tol

MODES = ("zeros", "reflect", "replicate", "circular")


def _with_specials(x: np.ndarray) -> np.ndarray:
    """Puts NaN, +inf and -inf at fixed interior and border positions of ``x``."""
    x = x.copy()
    flat = x.reshape(-1)
    flat[[0, flat.size // 3, flat.size // 2]] = [np.nan, np.inf, -np.inf]
    return x


# ---------------------------------------------------------------- conv2d


def _conv2d_ref(
    input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"
):
    torch = import_torch()
    if padding_mode == "zeros":
        return torch.nn.functional.conv2d(input, weight, bias, stride, padding, dilation, groups)
    # nn.Conv2d is the only torch API with padding_mode: call it with our tensors as its parameters.
    c_in = input.shape[-3]
    module = torch.nn.Conv2d(
        c_in,
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride,
        padding,
        dilation,
        groups,
        bias=bias is not None,
        padding_mode=padding_mode,
    )
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    return torch.func.functional_call(module, params, (input,))


def _conv2d_sample(rng, x_shape, w_shape, name, bias=True, specials=False, **kwargs):
    x = randn(rng, *x_shape)
    if specials:
        x = _with_specials(x)
    if bias:
        kwargs = {"bias": randn(rng, w_shape[0]), **kwargs}
    return SampleInput((x, randn(rng, *w_shape)), kwargs, name=name)


def _conv2d_samples(rng):
    s = _conv2d_sample
    yield s(rng, (2, 3, 7, 8), (4, 3, 3, 3), "3x3 padding 1", padding=1)
    yield s(
        rng,
        (2, 3, 9, 7),
        (5, 3, 3, 2),
        "stride (2,1), padding (1,0), dilation (1,2)",
        stride=(2, 1),
        padding=(1, 0),
        dilation=(1, 2),
    )
    yield s(
        rng,
        (1, 2, 11, 10),
        (3, 2, 4, 3),
        "stride 3x2 non-square, kernel 4x3",
        stride=(3, 2),
        padding=2,
    )
    yield s(
        rng,
        (1, 2, 10, 9),
        (3, 2, 5, 4),
        "stride 2, dilation 3 (phases of mixed size)",
        stride=2,
        dilation=3,
        padding=(3, 4),
    )
    yield s(rng, (1, 2, 8, 9), (3, 2, 1, 1), "1x1 stride 3 (skips rows)", stride=3)
    yield s(rng, (2, 2, 5, 6), (3, 2, 5, 6), "kernel = input: 1x1 output")
    yield s(rng, (2, 3, 7, 6), (4, 3, 3, 3), "'same', odd kernel", padding="same")
    yield s(
        rng,
        (2, 3, 7, 6),
        (4, 3, 4, 2),
        "'same', even kernel, dilation (1,3): asymmetric",
        padding="same",
        dilation=(1, 3),
    )
    yield s(rng, (2, 3, 7, 6), (4, 3, 3, 2), "'valid'", padding="valid")
    yield s(rng, (2, 4, 7, 8), (6, 2, 3, 3), "groups 2", padding=1, groups=2)
    yield s(rng, (2, 6, 7, 8), (6, 2, 3, 2), "groups 3 strided", stride=2, padding=1, groups=3)
    yield s(rng, (2, 4, 7, 8), (4, 1, 3, 3), "depthwise", padding=1, groups=4)
    yield s(
        rng,
        (2, 3, 9, 8),
        (6, 1, 3, 2),
        "depthwise x2 multiplier, stride 2, dilation 2",
        stride=2,
        dilation=2,
        padding=(2, 1),
        groups=3,
    )
    yield s(
        rng,
        (2, 3, 7, 8),
        (3, 1, 3, 3),
        "depthwise 'same', dilation 2",
        padding="same",
        dilation=2,
        groups=3,
    )
    for mode in MODES[1:]:
        yield s(
            rng,
            (2, 3, 6, 7),
            (4, 3, 3, 2),
            f"{mode} padding (2,1)",
            padding=(2, 1),
            padding_mode=mode,
        )
    yield s(
        rng,
        (1, 2, 5, 6),
        (4, 1, 3, 3),
        "reflect 'same' depthwise x2",
        padding="same",
        groups=2,
        padding_mode="reflect",
    )
    yield s(
        rng,
        (2, 4, 6, 5),
        (4, 2, 2, 3),
        "circular stride 2 groups 2",
        stride=2,
        padding=1,
        groups=2,
        padding_mode="circular",
    )
    yield s(
        rng,
        (2, 4, 6, 5),
        (4, 2, 2, 3),
        "replicate stride (1,2) groups 2",
        stride=(1, 2),
        padding=(0, 2),
        groups=2,
        padding_mode="replicate",
    )
    yield s(
        rng,
        (1, 2, 4, 5),
        (3, 2, 3, 3),
        "reflect at its limit (padding = size - 1)",
        padding=(3, 4),
        padding_mode="reflect",
    )
    yield s(
        rng,
        (1, 2, 3, 4),
        (3, 2, 3, 3),
        "circular at its limit (padding = size)",
        padding=(3, 4),
        padding_mode="circular",
    )
    yield s(rng, (3, 5, 6), (4, 3, 3, 3), "unbatched", padding=1)
    yield s(
        rng,
        (4, 6, 5),
        (4, 2, 2, 2),
        "unbatched groups 2 reflect",
        padding=1,
        groups=2,
        padding_mode="reflect",
    )
    yield s(rng, (0, 3, 5, 6), (4, 3, 3, 3), "empty batch", padding=1)
    yield s(
        rng,
        (0, 3, 5, 6),
        (6, 1, 3, 3),
        "empty batch depthwise circular",
        padding=1,
        groups=3,
        padding_mode="circular",
    )
    yield s(rng, (2, 3, 6, 7), (4, 3, 3, 3), "nan/inf input", specials=True, padding=1)
    yield s(
        rng,
        (2, 3, 6, 7),
        (3, 1, 3, 3),
        "nan/inf input depthwise strided",
        specials=True,
        stride=2,
        padding=1,
        groups=3,
    )
    yield s(
        rng,
        (2, 3, 9, 7),
        (4, 3, 3, 2),
        "nan/inf input strided reflect",
        specials=True,
        stride=(2, 3),
        padding=1,
        padding_mode="reflect",
    )
    for i in range(8):
        groups = int(rng.choice([1, 1, 2, 3]))
        c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 3))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        mode = MODES[i % 4]
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
        n = int(rng.integers(1, 3))
        x_shape = (n, c_in, *hw) if i % 3 else (c_in, *hw)
        yield s(
            rng,
            x_shape,
            (c_out, c_in // groups, *k),
            f"random {x_shape} k{k} s{stride} p{padding} d{dilation} g{groups} {mode}",
            bias=bool(i % 2),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=mode,
        )


def _conv2d_errors():
    x = np.zeros((2, 4, 5, 6), np.float32)
    w = np.zeros((6, 2, 3, 3), np.float32)
    w4 = np.zeros((6, 4, 3, 3), np.float32)
    op = r"jaxops\.conv2d: "

    def e(args, kwargs, error, match):
        return ErrorInput(SampleInput(args, kwargs), error, op + match)

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
        r"kernel size \(7, 3\) with dilation \(1, 1\) spans \(7, 3\), larger than the padded input \(5, 6\)",
    )
    yield e(
        (x, w4),
        {"dilation": 3},
        ValueError,
        r"kernel size \(3, 3\) with dilation \(3, 3\) spans \(7, 7\), larger than the padded input \(5, 6\)",
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
        r"reflect padding \(\(5, 5\), \(5, 5\)\) must be smaller than the input's spatial size \(5, 6\)",
    )
    yield e(
        (np.zeros((2, 4, 3, 6), np.float32), w4),
        {"padding": "same", "dilation": 3, "padding_mode": "reflect"},
        ValueError,
        r"reflect padding \(\(3, 3\), \(3, 3\)\) must be smaller than the input's spatial size \(3, 6\)",
    )
    yield e(
        (x, w4),
        {"padding": 6, "padding_mode": "circular"},
        ValueError,
        r"circular padding \(\(6, 6\), \(6, 6\)\) must not exceed the input's spatial size \(5, 6\)",
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


def _conv2d_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw_):
        groups = draw_(st.sampled_from([1, 2]))
        c_in, c_out = groups * draw_(st.integers(1, 2)), groups * draw_(st.integers(1, 2))
        k = (draw_(st.integers(1, 3)), draw_(st.integers(1, 3)))
        dilation = (draw_(st.integers(1, 2)), draw_(st.integers(1, 2)))
        mode = draw_(st.sampled_from(MODES))
        same = draw_(st.booleans())
        stride = (1, 1) if same else (draw_(st.integers(1, 3)), draw_(st.integers(1, 3)))
        padding = "same" if same else (draw_(st.integers(0, 2)), draw_(st.integers(0, 2)))
        pads = [(d * (kk - 1)) // 2 + 1 for d, kk in zip(dilation, k)] if same else padding
        hw = [
            max(d * (kk - 1) + 1, p + 1) + draw_(st.integers(0, 3))
            for d, kk, p in zip(dilation, k, pads)
        ]
        n = draw_(st.integers(0, 2))
        rng = np.random.default_rng(draw_(st.integers(0, 2**31)))
        x_shape = (n, c_in, *hw) if draw_(st.booleans()) else (c_in, *hw)
        bias = randn(rng, c_out) if draw_(st.booleans()) else None
        args = (randn(rng, *x_shape), randn(rng, c_out, c_in // groups, *k))
        kwargs = {
            "bias": bias,
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
            "padding_mode": mode,
        }
        return SampleInput(args, kwargs, name="hypothesis")

    return draw()


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
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    return torch.func.functional_call(module, params, (input,), {"output_size": output_size})


def _transpose_sample(rng, x_shape, w_shape, name, bias=True, specials=False, **kwargs):
    x = randn(rng, *x_shape)
    if specials:
        x = _with_specials(x)
    groups = kwargs.get("groups", 1)
    if bias:
        kwargs = {"bias": randn(rng, w_shape[1] * groups), **kwargs}
    return SampleInput((x, randn(rng, *w_shape)), kwargs, name=name)


def _conv_transpose2d_samples(rng):
    s = _transpose_sample
    yield s(rng, (2, 3, 5, 6), (3, 4, 3, 3), "3x3")
    yield s(rng, (2, 3, 5, 6), (3, 4, 3, 3), "no bias, padding 1", bias=False, padding=1)
    yield s(rng, (2, 4, 5, 4), (4, 3, 4, 4), "k4 s2 p1 (upsampling x2)", stride=2, padding=1)
    yield s(
        rng,
        (2, 4, 5, 4),
        (4, 3, 3, 3),
        "k3 s2 p1 output_padding 1",
        stride=2,
        padding=1,
        output_padding=1,
    )
    yield s(
        rng,
        (1, 2, 4, 5),
        (2, 3, 3, 2),
        "stride (3,2) output_padding (2,1), non-square",
        stride=(3, 2),
        padding=(1, 0),
        output_padding=(2, 1),
    )
    yield s(
        rng,
        (1, 2, 4, 5),
        (2, 3, 3, 3),
        "output_padding 1 < dilation 2 (stride 1)",
        dilation=2,
        output_padding=1,
    )
    yield s(
        rng,
        (1, 2, 4, 5),
        (2, 3, 2, 3),
        "padding 0, output_padding 1: negative high pad of the conv",
        stride=2,
        output_padding=1,
    )
    yield s(
        rng,
        (1, 2, 6, 5),
        (2, 2, 3, 4),
        "stride 2 dilation 3, mixed phases",
        stride=2,
        dilation=3,
        padding=(2, 1),
    )
    yield s(rng, (1, 2, 3, 3), (2, 3, 3, 3), "padding 2: 1x1 output", padding=2)
    yield s(rng, (2, 4, 5, 6), (4, 3, 3, 3), "groups 2", groups=2, stride=2, padding=1)
    yield s(
        rng, (2, 6, 4, 5), (6, 1, 3, 2), "groups 3, one output channel each", groups=3, padding=1
    )
    yield s(
        rng,
        (2, 4, 4, 5),
        (4, 1, 3, 3),
        "depthwise (forward conv is depthwise), stride 2",
        groups=4,
        stride=2,
        padding=1,
        output_padding=1,
    )
    yield s(
        rng,
        (2, 4, 5, 4),
        (4, 1, 3, 3),
        "depthwise-transposed x2: 2 inputs per output channel",
        groups=2,
        padding=1,
        dilation=2,
    )
    yield s(
        rng,
        (2, 3, 5, 6),
        (3, 2, 3, 3),
        "output_size (H, W)",
        stride=2,
        padding=1,
        output_size=(10, 12),
    )
    yield s(
        rng,
        (2, 3, 5, 6),
        (3, 2, 3, 3),
        "output_size full shape",
        stride=(2, 3),
        output_size=[2, 2, 12, 19],
    )
    yield s(
        rng,
        (3, 5, 6),
        (3, 2, 3, 3),
        "unbatched output_size (C, H, W)",
        stride=2,
        output_size=(2, 11, 14),
    )
    yield s(rng, (3, 5, 6), (3, 4, 2, 3), "unbatched", stride=2)
    yield s(rng, (0, 3, 5, 6), (3, 4, 3, 3), "empty batch", stride=2, padding=1)
    yield s(rng, (2, 3, 5, 6), (3, 4, 3, 3), "nan/inf input", specials=True, padding=1)
    yield s(
        rng, (2, 3, 5, 6), (3, 4, 4, 3), "nan/inf input strided", specials=True, stride=2, padding=1
    )
    yield s(
        rng,
        (2, 4, 5, 6),
        (4, 1, 3, 3),
        "nan/inf input depthwise strided",
        specials=True,
        stride=2,
        groups=4,
    )
    for i in range(7):
        groups = int(rng.choice([1, 1, 2, 3]))
        c_in, c_out_g = groups * int(rng.integers(1, 4)), int(rng.integers(1, 3))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        output_padding = tuple(int(rng.integers(0, max(s_, d))) for s_, d in zip(stride, dilation))
        hw = tuple(int(rng.integers(1, 6)) for _ in range(2))
        hw = tuple(
            max(h, (2 * p - d * (kk - 1) - op) // s_ + 2)
            for h, p, d, kk, op, s_ in zip(hw, padding, dilation, k, output_padding, stride)
        )
        n = int(rng.integers(1, 3))
        x_shape = (n, c_in, *hw) if i % 3 else (c_in, *hw)
        yield s(
            rng,
            x_shape,
            (c_in, c_out_g, *k),
            f"random {x_shape} k{k} s{stride} p{padding} op{output_padding} d{dilation} g{groups}",
            bias=bool(i % 2),
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            groups=groups,
            dilation=dilation,
        )


def _conv_transpose2d_errors():
    x = np.zeros((2, 4, 5, 6), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    op = r"jaxops\.conv_transpose2d: "

    def e(args, kwargs, error, match):
        return ErrorInput(SampleInput(args, kwargs), error, op + match)

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
        r"output_padding \(=\(2, 2\)\) must be smaller than either stride \(=\(2, 2\)\) or dilation \(=\(1, 1\)\)",
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
        r"requested an output size of \(13, 13\), but valid sizes range from \(11, 13\) to \(12, 14\)",
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


def _conv_transpose2d_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw_):
        groups = draw_(st.sampled_from([1, 2]))
        c_in, c_out_g = groups * draw_(st.integers(1, 2)), draw_(st.integers(1, 2))
        k = (draw_(st.integers(1, 3)), draw_(st.integers(1, 3)))
        stride = (draw_(st.integers(1, 3)), draw_(st.integers(1, 3)))
        dilation = (draw_(st.integers(1, 2)), draw_(st.integers(1, 2)))
        padding = (draw_(st.integers(0, 2)), draw_(st.integers(0, 2)))
        output_padding = tuple(
            draw_(st.integers(0, max(s_, d) - 1)) for s_, d in zip(stride, dilation)
        )
        hw = [
            max(draw_(st.integers(1, 4)), (2 * p - d * (kk - 1) - op) // s_ + 2)
            for p, d, kk, op, s_ in zip(padding, dilation, k, output_padding, stride)
        ]
        n = draw_(st.integers(0, 2))
        rng = np.random.default_rng(draw_(st.integers(0, 2**31)))
        x_shape = (n, c_in, *hw) if draw_(st.booleans()) else (c_in, *hw)
        bias = randn(rng, c_out_g * groups) if draw_(st.booleans()) else None
        args = (randn(rng, *x_shape), randn(rng, c_in, c_out_g, *k))
        kwargs = {
            "bias": bias,
            "stride": stride,
            "padding": padding,
            "output_padding": output_padding,
            "groups": groups,
            "dilation": dilation,
        }
        return SampleInput(args, kwargs, name="hypothesis")

    return draw()


OPS = [
    OpInfo(
        name="conv2d",
        op=jaxops.conv2d,
        ref=_conv2d_ref,
        sample_inputs=_conv2d_samples,
        error_inputs=_conv2d_errors,
        grad_args=(0, 1, "bias"),
        batch_args=batch_axis(0, ndim=4),
        formula="out[n,o] = b[o] + sum_c w[o,c] * pad(x)[n,c] (strided, dilated, grouped)",
        # Sums of up to ~100 (forward) and ~1000 (weight gradient) float32 products of
        # unit-variance terms, accumulated in a different order than torch's kernels.
        fwd_tol=Tol(1e-5, 1e-5),
        grad_tol=Tol(1e-5, 3e-5),
        torch_name="torch.nn.functional.conv2d / nn.Conv2d(padding_mode)",
        strategy=_conv2d_strategy,
    ),
    OpInfo(
        name="conv_transpose2d",
        op=jaxops.conv_transpose2d,
        ref=_conv_transpose2d_ref,
        sample_inputs=_conv_transpose2d_samples,
        error_inputs=_conv_transpose2d_errors,
        grad_args=(0, 1, "bias"),
        batch_args=batch_axis(0, ndim=4),
        formula="out = vjp_x(conv2d(x, w, pad=(p, p - output_padding)))(input) + b",
        # As conv2d: sums of up to a few hundred float32 products in a different order.
        fwd_tol=Tol(1e-5, 1e-5),
        grad_tol=Tol(1e-5, 3e-5),
        torch_name="torch.nn.functional.conv_transpose2d / nn.ConvTranspose2d(output_size)",
        strategy=_conv_transpose2d_strategy,
    ),
]
