"""Pooling: :func:`max_pool2d` (with indices), :func:`max_unpool2d` and :func:`avg_pool2d`.

The semantics, stated once (torch's CPU kernels); the window rules every
formulation follows are methods of :class:`_Pool`:

- ``max_pool2d`` visits each window in row-major order from its first
  in-bounds element (:meth:`_Pool.first_tap`); a value replaces the running
  maximum if it is greater or NaN (:meth:`_Pool.replaces`: the first maximum
  wins ties, the last NaN wins) and the implicit padding never does. The
  derivative sends each window's cotangent to that one element; an element
  chosen by several windows receives the sum of their cotangents, added in
  row-major window order as torch's backward adds them. A dilated window lying
  entirely in the padding gives ``-inf`` (the dtype's minimum for integers),
  torch's out-of-range starting index, and no gradient.
- ``avg_pool2d`` divides a window sum by a divisor that depends only on shapes
  and arguments (built with NumPy at trace time).
- ``max_unpool2d`` writes each value at its index (the last of repeated indices
  wins); its gradient gathers the cotangent at the indices.

How XLA computes it is chosen per backend (:mod:`jaxops._platform`) only where
the fastest construction differs:

- ``max_pool2d`` values without derivatives: ``lax.reduce_window`` (max) on
  every backend.
- ``max_pool2d``'s derivative and ``return_indices`` (a ``jax.custom_jvp``, so
  ``jvp``, ``jacfwd`` and Hessians work):

  - **portable** (GPU, TPU, and any backend but CPU): the winning *tap*
    ``(a, b)`` of each window from a scan over its strided views; the tangent
    is the tap's strided view of the padded tangent, selected by one mask per
    tap. That is linear in the tangent, and its transpose, reverse mode, is a
    sum of strided pads (``lax.pad`` with interior padding) of the masked
    cotangent: no scatter, deterministic, and added in torch's order. Large
    kernels go separably, along W within rows then along H, where that is
    exact (:func:`_separable`).
  - **cpu**: the flat argmax and a gather of the tangent, so reverse mode is a
    scatter-add, one sequential loop on XLA:CPU (:mod:`jaxops._cpu.pooling`).

  Both formulations select the same element and add the same cotangents in
  the same order: their results are identical, bit for bit.
- ``avg_pool2d`` is a ``lax.reduce_window`` sum on every backend; its gradient
  is JAX's (a padded ``reduce_window``: no scatter).
- ``max_unpool2d``'s forward is a scatter by definition (values written at
  indices of the data); its tangent is a scatter-add whose transpose, the
  gradient, is torch's gather, on every backend.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxops import _checks, _platform, _utils
from jaxops._cpu import pooling as _cpu

# ------------------------------------------------------------------ the window and its rules


@dataclasses.dataclass(frozen=True)
class _Pool:
    """A validated 2-d pooling window and torch's rules for it: every field static and hashable.

    Axis 0 is H and axis 1 is W. Tap ``a`` of output position ``i`` along an
    axis is input position ``i * stride - padding + a * dilation``, and
    ``padded`` arrays hold it at ``i * stride + a * dilation``.
    """

    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]

    @staticmethod
    def lowest(dtype: Any) -> Any:
        """The implicit padding and the running maximum's start: never selected."""
        if jnp.issubdtype(dtype, jnp.floating):
            return -np.inf
        return jnp.iinfo(dtype).min

    @staticmethod
    def replaces(v: jax.Array, best: jax.Array) -> jax.Array:
        """torch's sequential rule: ``v`` replaces the running maximum if greater, or NaN."""
        if jnp.issubdtype(v.dtype, jnp.floating):
            return (v > best) | jnp.isnan(v)
        return v > best

    def first_tap(self, axis: int) -> np.ndarray:
        """Per output position, the tap of torch's first in-bounds element (its start).

        With dilation a window can lie entirely in the padding; torch then still
        starts from this element, past the window (a tap ``>= kernel``) or past
        the input.
        """
        start = np.arange(self.out_hw[axis]) * self.stride[axis] - self.padding[axis]
        d = self.dilation[axis]
        return np.where(start < 0, (-start + d - 1) // d, 0)

    def first_in_bounds(self, axis: int) -> np.ndarray:
        """Per output position, the input position torch's window loop starts at."""
        start = np.arange(self.out_hw[axis]) * self.stride[axis] - self.padding[axis]
        return start + self.first_tap(axis) * self.dilation[axis]

    def holds_element(self, axis: int) -> np.ndarray:
        """Per output position, whether the window holds an input element along ``axis``."""
        inside = self.first_in_bounds(axis) < self.in_hw[axis]
        return (self.first_tap(axis) < self.kernel[axis]) & inside

    def shares(self, axis: int) -> bool:
        """Whether two windows along ``axis`` hold a common position (their taps overlap).

        Taps ``a != a'`` of windows ``i != i'`` coincide iff
        ``(i - i') * s == (a' - a) * d``: ``|a' - a|`` a multiple of ``s / gcd(s, d)``
        and ``|i - i'|`` one of ``d / gcd(s, d)``.
        """
        k, s, d = self.kernel[axis], self.stride[axis], self.dilation[axis]
        g = math.gcd(s, d)
        return k - 1 >= s // g and self.out_hw[axis] - 1 >= d // g

    def pad_hi(self, axis: int) -> int:
        """Padding after the input so that the last window ends exactly at the padded edge.

        Negative when the last window ends before the input does (floor mode);
        positive beyond ``padding`` where a ceil-mode window overhangs.
        """
        k, s, d = self.kernel[axis], self.stride[axis], self.dilation[axis]
        return (self.out_hw[axis] - 1) * s + (k - 1) * d + 1 - self.in_hw[axis] - self.padding[axis]

    def padded(self, x: jax.Array, value: Any) -> jax.Array:
        """``x`` padded (or cropped) on H and W with ``value``: the windows tile ``out_hw``."""
        (ph, pw), hi_h, hi_w = self.padding, self.pad_hi(0), self.pad_hi(1)
        config = ((0, 0, 0), (0, 0, 0), (ph, hi_h, 0), (pw, hi_w, 0))
        return lax.pad(x, jnp.array(value, x.dtype), config)

    def window_padding(self, x: jax.Array) -> tuple[jax.Array, tuple]:
        """``x`` and the padding for ``reduce_window`` so that the windows tile exactly ``out_hw``.

        The padding goes to ``reduce_window`` itself (an explicit pad costs a pass over
        the input, forward and backward); only a negative high side (the last window
        ending before the input does) is cropped first.
        """
        hi_h, hi_w = self.pad_hi(0), self.pad_hi(1)
        xs = x[:, :, : x.shape[2] + min(hi_h, 0), : x.shape[3] + min(hi_w, 0)]
        ph, pw = self.padding
        return xs, ((0, 0), (0, 0), (ph, max(hi_h, 0)), (pw, max(hi_w, 0)))


# ------------------------------------------------------------------ arguments


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape``: in ceil mode the last window must start inside
    the input or its left padding."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _check_input(op: str, input: Any, integer_ok: bool = True) -> jax.Array:
    _utils.check_array(op, "input", input)
    x = jnp.asarray(input)
    if x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise _utils.fail(
            op, f"input must have a real floating or integer dtype, got {x.dtype}", TypeError
        )
    if not integer_ok and not jnp.issubdtype(x.dtype, jnp.floating):
        raise _utils.fail(op, f"input must have a floating dtype, got {x.dtype}", TypeError)
    if x.ndim not in (3, 4):
        raise _utils.fail(
            op, f"input must have 3 (C, H, W) or 4 (N, C, H, W) dimensions, got shape {x.shape}"
        )
    if 0 in x.shape[-3:]:
        raise _utils.fail(
            op,
            "input must have non-zero channel and spatial sizes (only the batch may be empty), "
            f"got shape {x.shape}",
        )
    return x


def _window_args(
    op: str, kernel_size: Any, stride: Any, padding: Any
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``kernel_size``, ``stride`` (``None``/``()``: the kernel) and ``padding``: checked pairs."""
    kernel = _utils.as_tuple(op, "kernel_size", kernel_size)
    _utils.check_positive(op, "kernel_size", kernel)
    empty = isinstance(stride, Sequence) and not isinstance(stride, str) and len(stride) == 0
    stride_ = kernel if stride is None or empty else _utils.as_tuple(op, "stride", stride)
    _utils.check_positive(op, "stride", stride_)
    pad = _utils.as_tuple(op, "padding", padding)
    _utils.check_nonnegative(op, "padding", pad)
    return kernel, stride_, pad  # type: ignore[return-value]


def _pool_config(
    op: str,
    x: jax.Array,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
) -> _Pool:
    kernel, stride_, pad = _window_args(op, kernel_size, stride, padding)
    dil = _utils.as_tuple(op, "dilation", dilation)
    _utils.check_positive(op, "dilation", dil)
    if any(p > k // 2 for p, k in zip(pad, kernel)):
        raise _utils.fail(op, f"padding (={pad}) must be at most half of kernel_size (={kernel})")
    in_hw = (int(x.shape[-2]), int(x.shape[-1]))
    out_hw = tuple(
        _out_size(n, k, s, p, d, bool(ceil_mode))
        for n, k, s, p, d in zip(in_hw, kernel, stride_, pad, dil)
    )
    if min(out_hw) < 1:
        raise _utils.fail(
            op,
            f"output size {out_hw[0]}x{out_hw[1]} is too small: input size {in_hw[0]}x{in_hw[1]}, "
            f"kernel_size={kernel}, stride={stride_}, padding={pad}, dilation={dil}",
        )
    return _Pool(in_hw, kernel, stride_, pad, dil, out_hw)  # type: ignore[arg-type]


def _index_dtype() -> Any:
    """int64 as torch, where JAX has it (``jax_enable_x64``); int32 otherwise."""
    return jax.dtypes.canonicalize_dtype(np.int64)


# ------------------------------------------------------------- max_pool2d: the portable formulation


def _separable(cfg: _Pool) -> bool:
    """Whether the portable formulation selects, and differentiates, along W first, then H.

    Cost: the full form visits ``kh * kw`` taps, per window in the forward scan
    and per padded input element in reverse mode (one masked pad each), fused
    into one pass each way. The separable form visits ``kw + kh`` (along W for
    every padded row, then along H), but writes and reads an ``(H_pad, W_out)``
    intermediate in between, an extra pass through memory, counted here as
    about four taps' worth: windows up to 3x3 (and ``2 x k`` up to ``2 x 6``)
    stay in one pass, ``kh * kw <= kh + kw + 4``. That is the boundary measured
    for the CPU formulation's scan; it has not been timed on GPU or TPU.

    Exactness: both forms select torch's element (along W the last NaN or the
    first maximum of each row, then along H the row holding the last NaN or the
    first maximum: torch's row-major rule). But the separable reverse mode adds
    an element's cotangents in two levels, first over the windows of one column
    of windows, then over those columns; torch adds them one by one in
    row-major window order. The two sums agree bit for bit when the windows
    share no position along H or none along W (:meth:`_Pool.shares`, e.g. a
    global pooling or non-overlapping windows), so only then is it used.
    """
    kh, kw = cfg.kernel
    return kh * kw > kh + kw + 4 and not (cfg.shares(0) and cfg.shares(1))


def _view(z: jax.Array, cfg: _Pool, a: int | None = None, b: int | None = None) -> jax.Array:
    """Tap ``a`` along H and/or tap ``b`` along W of a padded array: one strided slice.

    A tap left ``None`` keeps that axis whole (the separable form's two passes).
    """
    lo, hi, step = [0, 0, 0, 0], list(z.shape), [1, 1, 1, 1]
    for axis, tap in ((0, a), (1, b)):
        if tap is not None:
            s, d, o = cfg.stride[axis], cfg.dilation[axis], cfg.out_hw[axis]
            lo[2 + axis], hi[2 + axis], step[2 + axis] = tap * d, tap * d + (o - 1) * s + 1, s
    return lax.slice(z, lo, hi, step)


def _scan_taps(
    x: jax.Array, cfg: _Pool, separable: bool
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Window maxima, and the winning tap of each window under torch's rule.

    Returns ``(best, tap_h, row_tap)``. Full form: ``tap_h`` is the tap
    ``a * kw + b`` (``kh * kw`` where torch's start lies past the window: no
    tap, no gradient) and ``row_tap`` is ``None``. Separable form: ``row_tap``
    is, per padded row and window column, the winning tap ``b`` along W, and
    ``tap_h`` the winning row tap ``a`` of each window. Taps are never compared
    as flat input indices, where a padded tap would alias a real element.
    """
    (kh, kw), (oh, ow) = cfg.kernel, cfg.out_hw
    low = jnp.array(cfg.lowest(x.dtype), x.dtype)
    xp = cfg.padded(x, low)
    first_h, first_w = cfg.first_tap(0), cfg.first_tap(1)

    def scan(z, taps, start, pick):
        best, tap = jnp.full(start.shape, low), start
        for number, view in taps:
            v = pick(z, view)
            take = cfg.replaces(v, best)
            best, tap = jnp.where(take, v, best), jnp.where(take, jnp.int32(number), tap)
        return best, tap

    n, c = x.shape[:2]
    if not separable:
        valid = (first_h < kh)[:, None] & (first_w < kw)[None, :]
        first = np.where(valid, first_h[:, None] * kw + first_w[None, :], kh * kw).astype(np.int32)
        taps = [(a * kw + b, (a, b)) for a in range(kh) for b in range(kw)]
        start = jnp.broadcast_to(first, (n, c, oh, ow))
        best, tap = scan(xp, taps, start, lambda z, t: _view(z, cfg, *t))
        return best, tap, None
    start_w = jnp.broadcast_to(first_w.astype(np.int32), (n, c, xp.shape[2], ow))
    along_w = [(b, b) for b in range(kw)]
    row_best, row_tap = scan(xp, along_w, start_w, lambda z, b: _view(z, cfg, b=b))
    start_h = jnp.broadcast_to(first_h.astype(np.int32)[:, None], (n, c, oh, ow))
    along_h = [(a, a) for a in range(kh)]
    best, tap_h = scan(row_best, along_h, start_h, lambda z, a: _view(z, cfg, a=a))
    return best, tap_h, row_tap


def _tangent(t: jax.Array, cfg: _Pool, tap_h: jax.Array, row_tap: jax.Array | None) -> jax.Array:
    """The tangent of the window maxima: ``t`` read at each window's winning tap.

    A chain of selects, one mask per tap, over the taps' strided views of the
    zero-padded tangent: linear in ``t``. JAX transposes it into, per tap, a
    strided pad (``lax.pad`` with interior padding) of the masked cotangent,
    accumulated last tap first. An element is tap ``a`` of window row
    ``i = (h - a * d) / s``: the last tap belongs to the first window, so the
    cotangents reach each element in row-major window order, as in torch's
    backward. Selects rather than a masked sum keep the tangent's ``-0.0``.
    """
    kh, kw = cfg.kernel
    tp = cfg.padded(t, 0)

    def select(z, mask_of, views):
        out = jnp.zeros(mask_of(0).shape, t.dtype)
        for number, view in enumerate(views):
            out = jnp.where(mask_of(number), view(z), out)
        return out

    if row_tap is None:
        views = [functools.partial(_view, cfg=cfg, a=a, b=b) for a in range(kh) for b in range(kw)]
        return select(tp, lambda k: tap_h == k, views)
    along_w = [functools.partial(_view, cfg=cfg, b=b) for b in range(kw)]
    along_h = [functools.partial(_view, cfg=cfg, a=a) for a in range(kh)]
    rows = select(tp, lambda b: row_tap == b, along_w)
    return select(rows, lambda a: tap_h == a, along_h)


def _flat_index(cfg: _Pool, tap_h: jax.Array, row_tap: jax.Array | None) -> jax.Array:
    """torch's index ``h * W + w`` of each window's element (its start when no element wins)."""
    (kh, kw), (sh, sw), (dh, dw) = cfg.kernel, cfg.stride, cfg.dilation
    (oh, ow), (_, w_in), (ph, pw) = cfg.out_hw, cfg.in_hw, cfg.padding
    first_h, first_w = cfg.first_tap(0)[:, None], cfg.first_tap(1)[None, :]
    if row_tap is None:
        real = tap_h < kh * kw
        a = jnp.where(real, tap_h // kw, first_h.astype(np.int32))
        b = jnp.where(real, tap_h % kw, first_w.astype(np.int32))
    else:
        a, b = tap_h, jnp.broadcast_to(first_w.astype(np.int32), tap_h.shape)
        for k in range(kh):  # the column tap of the winning row
            b = jnp.where(tap_h == k, _view(row_tap, cfg, a=k), b)
    rows = jnp.asarray((np.arange(oh) * sh - ph)[:, None], jnp.int32) + a * dh
    cols = jnp.asarray((np.arange(ow) * sw - pw)[None, :], jnp.int32) + b * dw
    return rows * w_in + cols


def _portable_argmax(cfg: _Pool, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    best, tap_h, row_tap = _scan_taps(x, cfg, _separable(cfg))
    return best, _flat_index(cfg, tap_h, row_tap)


def _portable_max_jvp(cfg: _Pool, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    best, tap_h, row_tap = _scan_taps(x, cfg, _separable(cfg))
    return best, _tangent(t, cfg, tap_h, row_tap)


def _portable_argmax_jvp(
    cfg: _Pool, x: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    best, tap_h, row_tap = _scan_taps(x, cfg, _separable(cfg))
    return best, _flat_index(cfg, tap_h, row_tap), _tangent(t, cfg, tap_h, row_tap)


# ------------------------------------------------------------------ max_pool2d: jitted core


def _reduce_window_max(x: jax.Array, cfg: _Pool) -> jax.Array:
    xs, pads = cfg.window_padding(x)
    return lax.reduce_window(
        xs,
        np.array(cfg.lowest(x.dtype), x.dtype),
        lax.max,
        (1, 1) + cfg.kernel,
        (1, 1) + cfg.stride,
        pads,
        window_dilation=(1, 1) + cfg.dilation,
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_values(x: jax.Array, cfg: _Pool) -> jax.Array:
    return _reduce_window_max(x, cfg)


@_max_values.defjvp
def _max_values_jvp(cfg: _Pool, primals: tuple, tangents: tuple) -> tuple:
    (x,), (t,) = primals, tangents
    return _platform.choose(
        x,
        t,
        cpu=functools.partial(_cpu.max_jvp, cfg),
        portable=functools.partial(_portable_max_jvp, cfg),
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_with_indices(x: jax.Array, cfg: _Pool) -> tuple[jax.Array, jax.Array]:
    return _platform.choose(
        x,
        cpu=functools.partial(_cpu.argmax, cfg),
        portable=functools.partial(_portable_argmax, cfg),
    )


@_max_with_indices.defjvp
def _max_with_indices_jvp(cfg: _Pool, primals: tuple, tangents: tuple) -> tuple:
    (x,), (t,) = primals, tangents
    best, flat, dt = _platform.choose(
        x,
        t,
        cpu=functools.partial(_cpu.argmax_jvp, cfg),
        portable=functools.partial(_portable_argmax_jvp, cfg),
    )
    return (best, flat), (dt, np.zeros(flat.shape, jax.dtypes.float0))


@functools.partial(jax.jit, static_argnames=("cfg", "return_indices"))
def _max_pool2d(x: jax.Array, cfg: _Pool, return_indices: bool) -> Any:
    if not return_indices:
        return _max_values(x, cfg)
    values, flat = _max_with_indices(x, cfg)
    return values, flat.astype(_index_dtype())


def max_pool2d(
    input: ArrayLike,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    r"""2-d max pooling over (N, C, H, W) or (C, H, W), like ``torch.nn.functional.max_pool2d``.

    .. math::
        H_{out} = \left\lfloor \frac{H + 2p_h - d_h (k_h - 1) - 1}{s_h} \right\rfloor + 1
        \quad (\lceil\cdot\rceil \text{ with ceil\_mode, dropping a last window that would
        start in the right padding}), \text{ likewise } W_{out}.

    The implicit padding is :math:`-\infty` (the dtype's minimum for integers) and
    never selected. Ties go to the first element in row-major window order; a
    NaN propagates, and among several NaNs the last one is selected, exactly as
    torch's CPU kernel does. The gradient flows to that one element (ties are
    not split; a NaN window sends it to the NaN), for dilated windows too; an
    element selected by several windows receives their cotangents summed in
    torch's order, so gradients equal torch's bit for bit. On GPU and TPU the
    gradient has no scatter (it is a sum of strided pads) and is deterministic.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) array, floating or integer; N may be 0.
        kernel_size: window size, an int or a pair (kH, kW).
        stride: window step, an int or a pair; ``None`` or ``()`` means ``kernel_size``.
        padding: implicit padding on both sides, at most half the kernel size.
        dilation: spacing between window elements.
        ceil_mode: use ceil instead of floor in the output size.
        return_indices: also return the argmax of each window as the flat index
            ``h * W + w`` within its unpadded (n, c) plane (the input for
            :func:`max_unpool2d`).

    Returns:
        The pooled array, (N, C, H_out, W_out) or (C, H_out, W_out), in the input's
        dtype; with ``return_indices`` also the indices, int64 when
        ``jax_enable_x64`` is on and int32 otherwise.

    Raises:
        ValueError: a wrong rank or an empty channel/spatial size; a non-positive
            kernel_size, stride or dilation; negative padding or padding above half
            the kernel; an output size below 1.
        TypeError: a non-array, boolean or complex input, or non-integer arguments.

    Example:
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> jaxops.max_pool2d(x, 2, return_indices=True)[1]
        Array([[[[ 5,  7],
                 [13, 15]]]], dtype=int32)

    Note:
        Without differentiation or ``return_indices`` the values come from
        ``lax.reduce_window``, whose max of ``-0.0`` and ``0.0`` may be ``0.0``
        where torch returns the first of the two. When dilation makes a window
        lie entirely in the padding, the value is ``-inf`` and the index is the
        (out-of-range) one torch reports; torch's backward then writes out of
        bounds, jaxops' gradient there is zero.
    """
    op = "max_pool2d"
    x = _check_input(op, input)
    cfg = _pool_config(op, x, kernel_size, stride, padding, dilation, ceil_mode)
    x4, unbatched = _utils.batched(x)
    out = _max_pool2d(x4, cfg, bool(return_indices))
    if unbatched:
        return tuple(o[0] for o in out) if return_indices else out[0]
    return out


# ------------------------------------------------------------------ max_unpool2d


def _scatter_planes(values: jax.Array, flat: jax.Array, size: int, combine: str) -> jax.Array:
    """Per (n, c) plane, writes ``values`` at ``flat`` into zeros of ``size``.

    Indices outside ``[0, size)`` (negative ones included) are dropped.
    """
    n, c = values.shape[:2]
    valid = (flat >= 0) & (flat < size)
    target = jnp.where(valid, flat, size).reshape(n * c, -1)  # ``size`` is out of range: dropped
    rows = lax.broadcasted_iota(jnp.int32, target.shape, 0)
    zeros = jnp.zeros((n * c, size), values.dtype)
    at = zeros.at[rows, target]
    vals = values.reshape(n * c, -1)
    if combine == "add":
        return at.add(vals, mode="drop")
    # torch writes sequentially, so the last of repeated indices wins: pick the
    # largest position per target deterministically, then gather it.
    pos = lax.broadcasted_iota(jnp.int32, target.shape, 1)
    winner = jnp.full((n * c, size), -1, jnp.int32).at[rows, target].max(pos, mode="drop")
    got = jnp.take_along_axis(vals, jnp.maximum(winner, 0), axis=1)
    return jnp.where(winner >= 0, got, jnp.zeros((), values.dtype))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _unpool(x: jax.Array, flat: jax.Array, size: int) -> jax.Array:
    return _scatter_planes(x, flat, size, "set")


@_unpool.defjvp
def _unpool_jvp(size: int, primals: tuple, tangents: tuple) -> tuple:
    (x, flat), (t, _) = primals, tangents
    # Linear in t; its transpose is the per-plane gather torch uses as the backward.
    return _unpool(x, flat, size), _scatter_planes(t, flat, size, "add")


@functools.partial(jax.jit, static_argnames=("out_hw",))
def _max_unpool2d(x: jax.Array, indices: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    n, c = x.shape[:2]
    size = out_hw[0] * out_hw[1]
    if size == 0 or x.size == 0:
        return jnp.zeros((n, c) + out_hw, x.dtype)
    out = _unpool(x, indices.astype(jnp.int32), size)
    return out.reshape((n, c) + out_hw)


def _check_indices(op: str, indices: Any, shape: tuple[int, ...]) -> jax.Array:
    _utils.check_array(op, "indices", indices)
    idx = jnp.asarray(indices)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise _utils.fail(op, f"indices must have an integer dtype, got {idx.dtype}", TypeError)
    if idx.shape != shape:
        raise _utils.fail(op, f"indices shape {idx.shape} must equal input shape {shape}")
    return idx


def _check_indices_in_range(op: str, idx: jax.Array, out_hw: tuple[int, int]) -> None:
    """Data-dependent: raises only under :func:`jaxops.checked` (see the Note of max_unpool2d)."""
    size = out_hw[0] * out_hw[1]
    if size > 0 and idx.size > 0:
        valid = (idx >= 0) & (idx < size)
        first_bad = jnp.ravel(idx)[jnp.argmin(jnp.ravel(valid))]
        _checks.data_check(
            jnp.all(valid),
            op,
            f"index {{index}} is out of range for output planes of size {out_hw[0]}x{out_hw[1]}",
            index=first_bad,
        )


def _unpool_config(
    op: str, x: jax.Array, kernel_size: Any, stride: Any, padding: Any, output_size: Any
) -> tuple[int, int]:
    """The output's spatial size: the default, or ``output_size`` checked against it."""
    kernel, stride, pad = _window_args(op, kernel_size, stride, padding)
    in_hw = (int(x.shape[-2]), int(x.shape[-1]))
    default = tuple((n - 1) * s + k - 2 * p for n, k, s, p in zip(in_hw, kernel, stride, pad))
    if output_size is None:
        size = default
    else:
        if not isinstance(output_size, Sequence) or isinstance(output_size, str):
            raise _utils.fail(
                op, f"output_size must be a sequence of 2 or 4 ints, got {output_size!r}", TypeError
            )
        items = tuple(_utils.as_int(op, "output_size", v) for v in output_size)
        if len(items) == 4:
            items = items[2:]
        if len(items) != 2:
            raise _utils.fail(
                op, f"output_size must have 2 or 4 elements, got {len(items)}: {output_size!r}"
            )
        for dim, (want, d, s) in enumerate(zip(items, default, stride)):
            if not d - s < want < d + s:
                raise _utils.fail(
                    op,
                    f"output_size (={items}) is invalid: dim {dim} must be strictly between "
                    f"{d - s} and {d + s}",
                )
        size = items
    for dim, v in enumerate(size):
        if v < 0:
            raise _utils.fail(op, f"output size (={size}) must be non-negative (dim {dim} is {v})")
    return size


def max_unpool2d(
    input: ArrayLike,
    indices: ArrayLike,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    output_size: Sequence[int] | None = None,
) -> jax.Array:
    r"""Partial inverse of :func:`max_pool2d`, like ``torch.nn.functional.max_unpool2d``.

    Writes each ``input`` value at its flat index ``h * W_out + w`` of its (n, c)
    output plane; everything else is zero.

    .. math::
        H_{out} = (H_{in} - 1) s_h - 2 p_h + k_h, \quad W_{out} = (W_{in} - 1) s_w - 2 p_w + k_w

    unless ``output_size`` is given (2 or 4 entries; each spatial size strictly
    within ``stride`` of the default).

    Args:
        input: (N, C, H, W) or (C, H, W) values, floating; N may be 0.
        indices: integer array of ``input``'s shape, as returned by
            ``max_pool2d(..., return_indices=True)``.
        kernel_size: the pooling's kernel size, an int or a pair.
        stride: the pooling's stride; ``None`` or ``()`` means ``kernel_size``.
        padding: the pooling's padding.
        output_size: optional (H_out, W_out) or (N, C, H_out, W_out).

    Returns:
        (N, C, H_out, W_out) or (C, H_out, W_out), in ``input``'s dtype.

    Raises:
        ValueError: wrong ranks, shapes of ``input`` and ``indices`` that differ, an
            empty channel/spatial size, a non-positive kernel_size or stride,
            negative padding, or an invalid/negative output size.
        TypeError: non-integer indices, a non-floating input, non-integer arguments.

    Example:
        >>> y, i = jaxops.max_pool2d(jnp.arange(16.0).reshape(1, 1, 4, 4), 2, return_indices=True)
        >>> jaxops.max_unpool2d(y, i, 2)[0, 0, 1]
        Array([0., 5., 0., 7.], dtype=float32)

    Note:
        Data-dependent check: torch raises for an index outside ``[0, H_out * W_out)``.
        jaxops checks this only under :func:`jaxops.checked`; otherwise (inside
        ``jit``) such an index is ignored: its value is dropped (the output keeps
        zero there) and its gradient is zero. Repeated indices: the last one in
        row-major input order is written (torch writes them in parallel, so its
        choice depends on thread scheduling unless the values agree, as they do
        coming from :func:`max_pool2d`). The gradient is torch's
        (a gather: every repeat of an index receives that position's cotangent);
        forward mode is its transpose, so repeats' tangents are summed where
        torch's forward-mode AD keeps the last one. torch accepts non-positive
        kernel sizes and strides and negative padding here; jaxops rejects them.
    """
    op = "max_unpool2d"
    x = _check_input(op, input, integer_ok=False)
    idx = _check_indices(op, indices, x.shape)
    out_hw = _unpool_config(op, x, kernel_size, stride, padding, output_size)
    _check_indices_in_range(op, idx, out_hw)
    x4, unbatched = _utils.batched(x)
    idx4, _ = _utils.batched(idx)
    out = _max_unpool2d(x4, idx4, out_hw)
    return out[0] if unbatched else out


# ------------------------------------------------------------------ avg_pool2d


def _avg_divisor(cfg: _Pool, count_include_pad: bool, divisor_override: int | None) -> np.ndarray:
    """torch's divisor per output position (static: shapes and arguments only)."""
    if divisor_override is not None:
        return np.full(cfg.out_hw, divisor_override, np.int64)
    sizes = []
    for axis in (0, 1):
        n, k, s, p = cfg.in_hw[axis], cfg.kernel[axis], cfg.stride[axis], cfg.padding[axis]
        start = np.arange(cfg.out_hw[axis]) * s - p
        end = np.minimum(start + k, n + p)  # the ceil-mode overhang beyond the padding never counts
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        sizes.append(np.maximum(end - start, 1))  # a window always holds an input element
    return sizes[0][:, None] * sizes[1][None, :]


@functools.partial(jax.jit, static_argnames=("cfg", "count_include_pad", "divisor_override"))
def _avg_pool2d(
    x: jax.Array, cfg: _Pool, count_include_pad: bool, divisor_override: int | None
) -> jax.Array:
    divisor = _avg_divisor(cfg, count_include_pad, divisor_override)
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    acc = jnp.promote_types(x.dtype, jnp.float32) if floating else x.dtype
    xs, pads = cfg.window_padding(x.astype(acc))
    # A NumPy init value lets lax recognise the sum monoid, which is differentiable.
    total = lax.reduce_window(
        xs, np.array(0, acc), lax.add, (1, 1) + cfg.kernel, (1, 1) + cfg.stride, pads
    )
    if floating:
        return (total / jnp.asarray(divisor, acc)).astype(x.dtype)
    # Integer division truncating towards zero, as torch's C++ does.
    return lax.div(total, jnp.broadcast_to(jnp.asarray(divisor, acc), total.shape))


def avg_pool2d(
    input: ArrayLike,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    r"""2-d average pooling over (N, C, H, W) or (C, H, W), like ``torch.nn.functional.avg_pool2d``.

    .. math::
        H_{out} = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1
        \quad (\lceil\cdot\rceil \text{ with ceil\_mode, dropping a last window that would
        start in the right padding}), \text{ likewise } W_{out};
        \qquad \text{out} = \frac{\sum_{\text{window}} x}{\text{divisor}}

    The divisor is ``divisor_override`` if given; else, with
    ``count_include_pad``, the window clipped to the padded input (a ceil-mode
    overhang beyond the padding is not counted); without it, the number of
    in-bounds elements.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) array, floating or integer; N may be 0.
        kernel_size: window size, an int or a pair.
        stride: window step, an int or a pair; ``None`` or ``()`` means ``kernel_size``.
        padding: implicit zero padding on both sides, at most half the kernel size.
        ceil_mode: use ceil instead of floor in the output size.
        count_include_pad: count the zero padding in the divisor.
        divisor_override: a non-zero int used as the divisor of every window.

    Returns:
        The pooled array, (N, C, H_out, W_out) or (C, H_out, W_out), in the input's
        dtype. Half-precision inputs are summed and divided in float32 (as torch
        does) and rounded once; integer inputs use truncating integer division.

    Raises:
        ValueError: a wrong rank or an empty channel/spatial size; a non-positive
            kernel_size or stride; negative padding or padding above half the
            kernel; an output size below 1; ``divisor_override`` of 0.
        TypeError: a non-array, boolean or complex input, or non-integer arguments.

    Example:
        >>> jaxops.avg_pool2d(jnp.arange(16.0).reshape(1, 1, 4, 4), 2)
        Array([[[[ 2.5,  4.5],
                 [10.5, 12.5]]]], dtype=float32)

    Note:
        torch implements integer average pooling for int64 only; jaxops accepts
        every integer dtype (int64 is int32 unless ``jax_enable_x64`` is on).
        Sums are accumulated in a different order than torch's, so float results
        may differ in the last bits.
    """
    op = "avg_pool2d"
    x = _check_input(op, input)
    cfg = _pool_config(op, x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        divisor_override = _utils.as_int(op, "divisor_override", divisor_override)
        if divisor_override == 0:
            raise _utils.fail(op, "divisor_override (=0) must not be zero")
    x4, unbatched = _utils.batched(x)
    out = _avg_pool2d(x4, cfg, bool(count_include_pad), divisor_override)
    return out[0] if unbatched else out
