"""Convolutions: :func:`conv2d` and :func:`conv_transpose2d`.

The semantics, stated once: ``conv2d`` is torch's cross-correlation (with
``nn.Conv2d``'s ``padding_mode`` applied by padding the input first), and
``conv_transpose2d`` *is* ``jax.vjp`` of that convolution with respect to its
input, applied to the transposed conv's input as the cotangent; its
``output_padding`` comes from the vjp of the conv whose bottom/right padding is
lowered by ``output_padding`` (possibly below zero), so that an input of the
larger size maps onto exactly the rows of ``x`` and the extra rows are output.
Bias is added per channel in at least float32.

How XLA computes it is chosen per backend (:mod:`jaxops._platform`):

- **portable** (GPU, TPU, and any backend but CPU): one
  ``lax.conv_general_dilated`` in the public NCHW/OIHW layout, which XLA:GPU
  hands to cuDNN (choosing the layout itself) and XLA:TPU to its convolution
  unit. ``conv_transpose2d`` is the vjp of that conv (cuDNN's backward-data);
  weight gradients are JAX's own transposes, again convolutions.
- **cpu**: stride-phase decomposition, NHWC Eigen convolutions, and weight
  gradients as im2col matmuls (row by row) or per-tap matmuls, chosen by
  timing XLA:CPU (:mod:`jaxops._cpu.conv`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxops import _platform, _utils
from jaxops._cpu import conv as _cpu

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_JNP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_NCHW = ("NCHW", "OIHW", "NCHW")

Pads = tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class _Conv:
    """A validated convolution: every field static and hashable.

    For ``conv_transpose2d``, ``pads`` are those of the convolution it is the vjp
    of (bottom/right lowered by ``output_padding``), and ``out_hw`` its output size.
    """

    stride: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]
    groups: int
    precision: Any
    padding_mode: str = "zeros"
    out_hw: tuple[int, int] | None = None


# ---------------------------------------------------------------- the portable formulation


def _portable_conv(cfg: _Conv, x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        w,
        cfg.stride,
        cfg.pads,
        rhs_dilation=cfg.dilation,
        dimension_numbers=_NCHW,
        feature_group_count=cfg.groups,
        precision=cfg.precision,
    )


def _portable_conv_transpose(cfg: _Conv, x: jax.Array, w: jax.Array) -> jax.Array:
    assert cfg.out_hw is not None  # set by _conv_transpose2d_config
    out_shape = (x.shape[0], w.shape[1] * cfg.groups, *cfg.out_hw)
    _, vjp = jax.vjp(lambda z: _portable_conv(cfg, z, w), jnp.zeros(out_shape, x.dtype))
    return vjp(x)[0]


# ---------------------------------------------------------------- jitted cores


def _add_bias(y: jax.Array, b: jax.Array) -> jax.Array:
    """Adds the per-channel bias in at least float32, rounding once.

    The bias gradient is the cotangent summed over (N, H, W); computing the add in float32
    makes that sum accumulate in float32 for half-precision inputs, as torch's does.
    """
    acc = jnp.promote_types(y.dtype, jnp.float32)
    return (y.astype(acc) + b.astype(acc)[:, None, None]).astype(y.dtype)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None, cfg: _Conv) -> jax.Array:
    if cfg.padding_mode != "zeros":
        x = jnp.pad(x, ((0, 0), (0, 0), *cfg.pads), mode=_JNP_PAD_MODE[cfg.padding_mode])
        cfg = dataclasses.replace(cfg, pads=((0, 0), (0, 0)), padding_mode="zeros")
    y = _platform.choose(
        x,
        w,
        cpu=lambda x, w: _cpu.conv2d(x, w, cfg.stride, cfg.pads, cfg.dilation, cfg.groups),
        portable=functools.partial(_portable_conv, cfg),
    )
    return y if b is None else _add_bias(y, b)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _conv_transpose2d(x: jax.Array, w: jax.Array, b: jax.Array | None, cfg: _Conv) -> jax.Array:
    assert cfg.out_hw is not None  # set by _conv_transpose2d_config
    out_shape = (x.shape[0], w.shape[1] * cfg.groups, *cfg.out_hw)
    y = _platform.choose(
        x,
        w,
        cpu=lambda x, w: _cpu.conv_transpose2d(
            x, w, out_shape, cfg.stride, cfg.pads, cfg.dilation, cfg.groups
        ),
        portable=functools.partial(_portable_conv_transpose, cfg),
    )
    return y if b is None else _add_bias(y, b)


# ---------------------------------------------------------------- validation


def _check_arrays(
    op: str, input: Any, weight: Any, bias: Any
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Checks ranks and dtypes; returns the arrays in their common floating dtype."""
    _utils.check_array(op, "input", input)
    _utils.check_array(op, "weight", weight)
    if bias is not None:
        _utils.check_array(op, "bias", bias)
    _utils.check_ndim(op, "input", input, (3, 4))
    _utils.check_ndim(op, "weight", weight, (4,))
    _utils.check_floating(op, "input", input)
    _utils.check_floating(op, "weight", weight)
    arrays = [input, weight] + ([] if bias is None else [bias])
    if bias is not None:
        _utils.check_floating(op, "bias", bias)
    dtype = jnp.result_type(*arrays)
    x, w = jnp.asarray(input, dtype), jnp.asarray(weight, dtype)
    b = None if bias is None else jnp.asarray(bias, dtype)
    return x, w, b


def _check_kernel(op: str, w: jax.Array) -> None:
    if w.shape[2] <= 0 or w.shape[3] <= 0:
        raise _utils.fail(
            op,
            f"kernel size (={tuple(w.shape[2:])}) must be positive, "
            f"got weight of shape {tuple(w.shape)}",
        )


def _check_geometry(
    op: str, stride: Any, dilation: Any, groups: Any
) -> tuple[tuple[int, int], tuple[int, int], int]:
    """``stride`` and ``dilation`` as positive pairs, ``groups`` as a positive int."""
    stride = _utils.as_tuple(op, "stride", stride)
    dilation = _utils.as_tuple(op, "dilation", dilation)
    groups = _utils.as_int(op, "groups", groups)
    _utils.check_positive(op, "stride", stride)
    _utils.check_positive(op, "dilation", dilation)
    _utils.check_positive(op, "groups", (groups,))
    return stride, dilation, groups


def _check_bias(op: str, b: jax.Array | None, channels: int) -> None:
    if b is not None and b.shape != (channels,):
        raise _utils.fail(
            op,
            f"bias must have shape ({channels},) (one value per output channel), "
            f"got {tuple(b.shape)}",
        )


def _check_spatial(op: str, x: jax.Array) -> None:
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise _utils.fail(
            op, f"input spatial size must be non-empty, got input of shape {tuple(x.shape)}"
        )


def _padding(op: str, padding: Any, stride, dilation, kernel) -> Pads:
    """Per-side padding from an int, a pair, ``"valid"`` or ``"same"`` (torch's split)."""
    if isinstance(padding, str):
        _utils.check_choice(op, "padding", padding, ("valid", "same"))
        if padding == "valid":
            return ((0, 0), (0, 0))
        if stride != (1, 1):
            raise _utils.fail(
                op, f"padding='same' is not supported for strided convolutions (stride={stride})"
            )
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
    pad = _utils.as_tuple(op, "padding", padding)
    _utils.check_nonnegative(op, "padding", pad)
    return tuple((p, p) for p in pad)  # type: ignore[return-value]


def _check_padding_mode(op: str, mode: str, pads: Pads, size: Sequence[int]) -> None:
    if mode == "reflect" and any(max(lo, hi) >= n for (lo, hi), n in zip(pads, size)):
        raise _utils.fail(
            op,
            f"reflect padding {pads} must be smaller than the input's spatial size {tuple(size)}",
        )
    if mode == "circular" and any(max(lo, hi) > n for (lo, hi), n in zip(pads, size)):
        raise _utils.fail(
            op, f"circular padding {pads} must not exceed the input's spatial size {tuple(size)}"
        )


def _conv2d_config(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    padding_mode: Any,
    precision: Any,
) -> _Conv:
    op = "conv2d"
    stride, dilation, groups = _check_geometry(op, stride, dilation, groups)
    _utils.check_choice(op, "padding_mode", padding_mode, PADDING_MODES)
    _check_kernel(op, w)
    kernel = tuple(w.shape[2:])
    pads = _padding(op, padding, stride, dilation, kernel)
    c_in, c_out = x.shape[-3], w.shape[0]
    if c_out == 0:
        raise _utils.fail(
            op,
            f"weight must have at least one output channel, got weight of shape {tuple(w.shape)}",
        )
    if c_out % groups:
        raise _utils.fail(
            op,
            f"weight's out channels (={c_out}) must be divisible by groups (={groups}), "
            f"got weight of shape {tuple(w.shape)}",
        )
    if w.shape[1] * groups != c_in:
        raise _utils.fail(
            op,
            f"input has {c_in} channels but weight of shape {tuple(w.shape)} with groups={groups} "
            f"expects {w.shape[1] * groups} (weight.shape[1] * groups)",
        )
    _check_bias(op, b, c_out)
    _check_spatial(op, x)
    size = x.shape[-2:]
    _check_padding_mode(op, padding_mode, pads, size)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(size, pads))
    effective = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if any(e > p for e, p in zip(effective, padded)):
        raise _utils.fail(
            op,
            f"kernel size {kernel} with dilation {dilation} spans {effective}, larger than the "
            f"padded input {padded}",
        )
    return _Conv(stride, pads, dilation, groups, _utils.precision(op, precision), padding_mode)


def _output_padding_from_size(
    op: str, output_size: Any, output_padding: tuple[int, int], ndim: int, smallest, stride, size
) -> tuple[int, int]:
    """The ``output_padding`` that ``nn.ConvTranspose2d.forward``'s ``output_size`` asks for."""
    if output_padding != (0, 0):
        raise _utils.fail(
            op,
            f"pass output_size (={output_size!r}) or output_padding (={output_padding}), not both",
        )
    if isinstance(output_size, str) or not isinstance(output_size, Sequence):
        raise _utils.fail(
            op, f"output_size must be a sequence of ints, got {output_size!r}", TypeError
        )
    requested = tuple(_utils.as_int(op, "output_size", v) for v in output_size)
    if len(requested) not in (2, ndim):
        raise _utils.fail(
            op,
            f"output_size must have 2 or {ndim} elements for a {ndim}-d input, got {output_size!r}",
        )
    requested = requested[-2:]
    largest = tuple(lo + s - 1 for lo, s in zip(smallest, stride))
    if any(not lo <= r <= hi for r, lo, hi in zip(requested, smallest, largest)):
        raise _utils.fail(
            op,
            f"requested an output size of {requested}, but valid sizes range from {smallest} to "
            f"{largest} (for an input of spatial size {tuple(size)})",
        )
    return tuple(r - lo for r, lo in zip(requested, smallest))


def _conv_transpose2d_config(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: Any,
    dilation: Any,
    output_size: Any,
    precision: Any,
) -> _Conv:
    op = "conv_transpose2d"
    stride, dilation, groups = _check_geometry(op, stride, dilation, groups)
    padding = _utils.as_tuple(op, "padding", padding)
    output_padding = _utils.as_tuple(op, "output_padding", output_padding)
    _utils.check_nonnegative(op, "padding", padding)
    _utils.check_nonnegative(op, "output_padding", output_padding)
    _check_kernel(op, w)
    kernel = tuple(w.shape[2:])
    c_in = x.shape[-3]
    if w.shape[0] % groups:
        raise _utils.fail(
            op,
            f"weight's in channels (={w.shape[0]}) must be divisible by groups (={groups}), "
            f"got weight of shape {tuple(w.shape)}",
        )
    if w.shape[0] != c_in:
        raise _utils.fail(
            op,
            f"input has {c_in} channels but weight of shape {tuple(w.shape)} expects "
            f"{w.shape[0]} (weight.shape[0])",
        )
    _check_bias(op, b, w.shape[1] * groups)
    _check_spatial(op, x)
    size = x.shape[-2:]
    smallest = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + 1
        for n, s, p, d, k in zip(size, stride, padding, dilation, kernel)
    )
    if output_size is not None:
        output_padding = _output_padding_from_size(
            op, output_size, output_padding, x.ndim, smallest, stride, size
        )
    if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        raise _utils.fail(
            op,
            f"output_padding (={output_padding}) must be smaller than either stride (={stride}) "
            f"or dilation (={dilation})",
        )
    out_hw = tuple(lo + o for lo, o in zip(smallest, output_padding))
    if any(n <= 0 for n in out_hw):
        raise _utils.fail(
            op,
            f"output spatial size {out_hw} must be positive "
            f"(input {tuple(size)}, padding {padding})",
        )
    # The conv this is the vjp of: its bottom/right padding lowered by output_padding, so that
    # an input of out_hw rows gives exactly the rows of x (the extra rows are output).
    (pad_h, pad_w), (opad_h, opad_w) = padding, output_padding  # 2-tuples (as_tuple)
    pads: Pads = ((pad_h, pad_h - opad_h), (pad_w, pad_w - opad_w))
    return _Conv(stride, pads, dilation, groups, _utils.precision(op, precision), out_hw=out_hw)


# ---------------------------------------------------------------- conv2d


def conv2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    *,
    precision: Any = None,
) -> jax.Array:
    r"""2-d cross-correlation, like ``torch.nn.functional.conv2d`` (plus ``nn.Conv2d``'s
    ``padding_mode``).

    .. math::
        \text{out}(n, o) = \text{bias}(o) + \sum_{c \in \text{group}(o)}
            \text{weight}(o, c) \star \text{input}(n, c), \qquad
        H_{out} = \left\lfloor \frac{H + 2p_0 - d_0 (k_0 - 1) - 1}{s_0} \right\rfloor + 1

    and likewise for :math:`W_{out}` with index 1.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``, floating.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride: int or pair, positive.
        padding: int or pair (non-negative, applied on both sides), ``"valid"``
            (no padding) or ``"same"`` (output size = input size; stride 1 only;
            total padding ``d * (k - 1)`` per dimension, the odd one on the
            bottom/right, as torch).
        dilation: int or pair, positive.
        groups: positive; divides ``C_in`` and ``C_out``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or
            ``"circular"``: how the padding is filled, as ``nn.Conv2d`` (the
            input is padded first, then convolved without padding).
        precision: keyword-only; the contraction precision on GPU/TPU, as
            ``lax.conv_general_dilated`` takes it. ``None`` (the default)
            means ``lax.Precision.HIGHEST``: float32-exact products, as torch
            on CPU. Pass ``"default"`` for TF32 (GPU) or one bfloat16 pass
            (TPU), like torch's ``allow_tf32``. XLA:CPU computes float32 in
            float32 whatever the setting.

    Returns:
        ``(N, C_out, H_out, W_out)``, or ``(C_out, H_out, W_out)`` for an
        unbatched input, in the common dtype of the arguments.

    Raises:
        ValueError: a bad rank, channel/groups mismatch, bias length, a
            non-positive stride, dilation, groups or kernel size, negative
            padding, ``"same"`` with a stride > 1, an unknown padding string
            or mode, reflect padding not smaller than the input (circular:
            larger than the input), or a kernel larger than the padded input.
        TypeError: a non-array or non-floating input, weight or bias, or
            non-integer sizes or an unknown ``precision``.

    Example:
        >>> x = jnp.ones((1, 3, 8, 8))
        >>> jaxops.conv2d(x, jnp.ones((4, 3, 3, 3)), padding="same").shape
        (1, 4, 8, 8)

    Note:
        Mixed floating dtypes are promoted (torch raises). Integer inputs are
        rejected (torch's CPU kernel accepts them). A weight with no input
        channels gives the bias (torch returns a tensor with no channels).
        NaN/inf in the input propagate exactly as in torch, gradients included;
        a non-finite weight next to zero padding gives NaN at the border
        (``0 * inf``), where torch's oneDNN kernel skips the padding.
    """
    x, w, b = _check_arrays("conv2d", input, weight, bias)
    cfg = _conv2d_config(x, w, b, stride, padding, dilation, groups, padding_mode, precision)
    x4, unbatched = _utils.batched(x)
    y = _conv2d(x4, w, b, cfg)
    return y[0] if unbatched else y


# ---------------------------------------------------------------- conv_transpose2d


def conv_transpose2d(
    input: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    output_size: Sequence[int] | None = None,
    *,
    precision: Any = None,
) -> jax.Array:
    r"""2-d transposed convolution, like ``torch.nn.functional.conv_transpose2d``.

    Defined as the vjp, with respect to its input, of the :func:`conv2d` with the
    same ``weight``, ``stride``, ``padding``, ``dilation`` and ``groups``, whose
    padding on the bottom/right is lowered by ``output_padding``; ``input`` is
    the cotangent. The gradient of ``conv2d`` w.r.t. its input is therefore
    exactly this op.

    .. math::
        H_{out} = (H - 1) s_0 - 2 p_0 + d_0 (k_0 - 1) + \text{output\_padding}_0 + 1

    and likewise for :math:`W_{out}` with index 1.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``, floating.
        weight: ``(C_in, C_out / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride: int or pair, positive.
        padding: int or pair, non-negative: ``d * (k - 1) - padding`` zeros
            are implicitly added to both sides of the input.
        output_padding: int or pair, non-negative; extra rows/columns at the
            bottom/right of the output. Each must be smaller than the stride
            or the dilation of its dimension.
        groups: positive; divides ``C_in`` and ``C_out``.
        dilation: int or pair, positive.
        output_size: optional ``(H_out, W_out)`` (or the full output shape,
            of which the last two are used), as ``nn.ConvTranspose2d.forward``
            accepts it: derives ``output_padding``; must be reachable, i.e.
            within ``[H_min, H_min + s_0 - 1]`` with ``H_min`` the size for
            ``output_padding=0``.
        precision: keyword-only; the contraction precision on GPU/TPU (see
            :func:`conv2d`); ``None`` means ``lax.Precision.HIGHEST``.

    Returns:
        ``(N, C_out, H_out, W_out)``, or ``(C_out, H_out, W_out)`` for an
        unbatched input.

    Raises:
        ValueError: a bad rank, channel/groups mismatch, bias length, a
            non-positive stride, dilation, groups or kernel size, negative
            padding or output_padding, output_padding not smaller than stride
            or dilation, an unreachable ``output_size``, ``output_size``
            together with a non-zero ``output_padding``, or a non-positive
            output size.
        TypeError: a non-array or non-floating input, weight or bias, or
            non-integer sizes or an unknown ``precision``.

    Example:
        >>> x = jnp.ones((1, 4, 5, 5))
        >>> jaxops.conv_transpose2d(x, jnp.ones((4, 2, 3, 3)), stride=2, output_padding=1).shape
        (1, 2, 12, 12)

    Note:
        An output size of 0 raises (torch returns an empty tensor). Mixed
        floating dtypes are promoted (torch raises); integer inputs are
        rejected. For a strided depthwise transposed conv (``groups`` equal to
        the output channels) with padding, the weight gradient multiplies a
        non-finite input by the cropped border's zeros: NaN where torch has a
        finite value. Everywhere else NaN/inf propagate as in torch.
    """
    x, w, b = _check_arrays("conv_transpose2d", input, weight, bias)
    cfg = _conv_transpose2d_config(
        x, w, b, stride, padding, output_padding, groups, dilation, output_size, precision
    )
    x4, unbatched = _utils.batched(x)
    y = _conv_transpose2d(x4, w, b, cfg)
    return y[0] if unbatched else y
