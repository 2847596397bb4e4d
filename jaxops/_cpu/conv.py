"""conv2d and conv_transpose2d as XLA:CPU runs them fastest (the ``cpu`` branch of
:mod:`jaxops.conv`).

Every formulation here computes the convolution :mod:`jaxops.conv` specifies,
forming only products torch forms; the choices below were made by timing
XLA:CPU and are not what XLA:GPU or XLA:TPU run well (they never see them):

- **Stride-phase decomposition.** A stride-``s`` convolution is rewritten as a
  sum of stride-1 convolutions, one per phase ``(k * d) mod s`` of the kernel
  taps, each reading a strided slice of the padded input and the taps of that
  phase (a dense sub-kernel, dilated by ``d / gcd(d, s)``). Nothing is
  multiplied by inserted zeros, so the NaN/inf pattern matches torch, and the
  transpose of each piece is again a stride-1 convolution: the vjp
  (``conv_transpose2d``, strided input gradients) never runs XLA:CPU's slow
  ``lhs_dilation`` convolution.
- **Depthwise convolutions** (one input channel per group) are shifted
  multiply-adds, one per kernel tap, fused into a single loop; XLA:CPU would
  otherwise loop over the groups.
- Dense and grouped convolutions run in NHWC/HWIO (XLA:CPU's native layout),
  as Eigen convolutions, forward and input gradient alike. The custom JVP's
  input tangent is the transpose of an explicit input gradient with the kernel
  flipped into HWIO (JAX's own transpose would give XLA:CPU's naive loop).
- **Stride-1 dense weight gradients are matmuls**: the weight tangent is an
  im2col matmul, one output row at a time, whose transpose accumulates the
  weight gradient row by row, ``(O, N * W_out) @ (N * W_out, K)``; XLA:CPU's
  weight-gradient convolution is several times slower. The patches are one
  gather, which XLA:CPU compiles as one kernel (a concatenation of tap
  slices compiles one kernel per tap). (An im2col forward,
  measured against Eigen's on ResNet-18's layers, was slower and doubled the
  compile time.)
- Weight gradients of strided, grouped and transposed convs are one matmul per
  block of kernel taps that meet the same output rows and columns
  (:func:`_conv_taps`), where XLA:CPU's own weight-gradient convolutions take a
  slow generic loop.

XLA:CPU computes float32 contractions in float32 whatever their precision
setting, so these formulations use ``Precision.HIGHEST`` throughout.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]

# ---------------------------------------------------------------- the linear core


class _Phase(NamedTuple):
    """The kernel taps of one stride phase along one spatial dimension.

    Taps ``k0, k0 + kstep, ...`` (``taps`` of them) all read input rows
    ``i * stride + offset + m * dil`` for output row ``i`` and tap number ``m``.
    """

    offset: int
    k0: int
    kstep: int
    taps: int  # not `count`, which would shadow tuple.count
    dil: int


@functools.cache
def _phases(k: int, s: int, d: int) -> tuple[_Phase, ...]:
    """Splits the taps ``0..k-1`` of one dimension by the phase ``(tap * d) mod s``."""
    g = math.gcd(d, s)
    phases = []
    for k0 in range(min(k, s // g)):
        count = len(range(k0, k, s // g))
        phases.append(_Phase(offset=k0 * d, k0=k0, kstep=s // g, taps=count, dil=d // g))
    return tuple(phases)


def _pad_zeros(x: jax.Array, pads: Sequence[tuple[int, int]], axes: Sequence[int]) -> jax.Array:
    config = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi) in zip(axes, pads):
        config[axis] = (lo, hi, 0)
    if all(c == (0, 0, 0) for c in config):
        return x
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _out_size(size: int, k: int, s: int, d: int, lo: int, hi: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _present(t) -> bool:
    return not isinstance(t, jax.custom_derivatives.SymbolicZero)


def _bilinear_tangent(y, dx, dw, input_grad, weight_term):
    """The tangent ``dx * w + x * dw`` of a convolution ``y = x * w``, bilinear in (x, w).

    The ``dx`` term is written as the transpose of ``input_grad`` (a linear map from
    ``y``-shaped cotangents to ``x``-shaped ones), so that reverse mode transposes it
    back and runs ``input_grad`` itself, a formulation chosen for speed, rather than
    JAX's transpose of the forward; ``weight_term(dw)`` is the ``dw`` term, likewise
    written for a fast transpose (the weight gradient). Symbolic-zero tangents add nothing.
    """
    dy = jnp.zeros_like(y)
    if _present(dx):
        dy = jax.linear_transpose(input_grad, jax.ShapeDtypeStruct(y.shape, y.dtype))(dx)[0]
    if _present(dw):
        dy = dy + weight_term(dw)
    return dy


def _conv_depthwise(x, w, stride, pads, dilation):
    """Depthwise conv (NCHW input, weight (C*m, 1, kH, kW)) as one shifted multiply-add per tap."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    mult = w.shape[0] // c
    (sh, sw), (dh, dw) = stride, dilation
    ho = _out_size(h, kh, sh, dh, *pads[0])
    wo = _out_size(wd, kw, sw, dw, *pads[1])
    xp = _pad_zeros(x, pads, (2, 3))
    taps = w.reshape(c, mult, kh, kw)
    out = None
    for i in range(kh):
        for j in range(kw):
            piece = lax.slice(
                xp,
                (0, 0, i * dh, j * dw),
                (n, c, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1),
                (1, 1, sh, sw),
            )
            term = piece[:, :, None] * taps[None, :, :, i, j, None, None]
            out = term if out is None else out + term
    return out.reshape(n, c * mult, ho, wo)


def _depthwise_input_grad(ct, w, pads, dilation, in_hw):
    """The input gradient of a stride-1 depthwise conv, itself a depthwise multiply-add over ``ct``.

    ``dx[h] = sum_k ct[h + lo - k d] w[k]``: a correlation of ``ct`` padded by
    ``d (k - 1) - lo`` (low side) with the flipped kernel, summed over the
    channel multiplier. Built from slices, it runs at the forward's speed.
    """
    n, cm, ho, wo = ct.shape
    kh, kw = w.shape[2:]
    c = in_hw[2]
    mult = cm // c
    lo = [d * (k - 1) - p for d, k, (p, _) in zip(dilation, (kh, kw), pads)]
    hi = [
        size + d * (k - 1) - o - a
        for size, d, k, o, a in zip(in_hw[:2], dilation, (kh, kw), (ho, wo), lo)
    ]
    ctp = _pad_zeros(ct, tuple(zip(lo, hi)), (2, 3))
    taps = jnp.flip(w, (2, 3)).reshape(c, mult, kh, kw)
    (h, wd), (dh, dw) = in_hw[:2], dilation
    out = None
    for i in range(kh):
        for j in range(kw):
            piece = lax.slice(ctp, (0, 0, i * dh, j * dw), (n, cm, i * dh + h, j * dw + wd))
            term = (piece.reshape(n, c, mult, h, wd) * taps[None, :, :, i, j, None, None]).sum(2)
            out = term if out is None else out + term
    return out


def _depthwise_weight_term(x, dw, pads, dilation):
    """The stride-1 depthwise conv, linear in ``dw``, written for a fast transpose.

    Each tap's weight is broadcast over the batch first and over the image
    second, so that its transpose (the weight gradient) reduces each image row
    by row (contiguous, vectorised) before summing over the batch, instead of
    one strided reduction over (N, H, W) at once.
    """
    n, c, h, wd = x.shape
    kh, kw = dw.shape[2:]
    mult = dw.shape[0] // c
    ho = _out_size(h, kh, 1, dilation[0], *pads[0])
    wo = _out_size(wd, kw, 1, dilation[1], *pads[1])
    xp = _pad_zeros(x, pads, (2, 3))
    taps = dw.reshape(c, mult, kh, kw)
    out = None
    for i in range(kh):
        for j in range(kw):
            piece = xp[
                :,
                :,
                None,
                i * dilation[0] : i * dilation[0] + ho,
                j * dilation[1] : j * dilation[1] + wo,
            ]
            per_image = jnp.broadcast_to(taps[None, :, :, i, j], (n, c, mult))
            term = piece * per_image[:, :, :, None, None]
            out = term if out is None else out + term
    return out.reshape(n, c * mult, ho, wo)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _depthwise_s1(x, w, pads, dilation):
    return _conv_depthwise(x, w, (1, 1), pads, dilation)


def _depthwise_s1_jvp(pads, dilation, primals, tangents):
    # JAX would transpose the slices of the multiply-adds into a sum of pads (a slow
    # select per element on XLA:CPU). The dx term is instead written as the transpose
    # of the slice-based input gradient, so that reverse mode transposes it back into
    # that gradient; the dw term keeps the taps on one axis (one fused reduction).
    (x, w), (dx, dw) = primals, tangents
    y = _depthwise_s1(x, w, pads, dilation)
    in_hw = (x.shape[2], x.shape[3], x.shape[1])
    input_grad = functools.partial(
        _depthwise_input_grad, w=w, pads=pads, dilation=dilation, in_hw=in_hw
    )
    return y, _bilinear_tangent(
        y, dx, dw, input_grad, lambda dw: _depthwise_weight_term(x, dw, pads, dilation)
    )


_depthwise_s1.defjvp(_depthwise_s1_jvp, symbolic_zeros=True)


def _tap_index(out0: int, outs: int, s: int, tap0: int, taps: int, d: int, pad: int):
    """``(outs, taps)``: the input row that output row ``out0 + y`` reads under tap
    ``tap0 + t`` (stride ``s``, dilation ``d``, low padding ``pad``)."""
    return (out0 + np.arange(outs)[:, None]) * s + (tap0 + np.arange(taps)) * d - pad


def _read_taps(x: jax.Array, rows: np.ndarray, cols: np.ndarray) -> jax.Array:
    """NHWC ``x`` at rows ``rows[y, i]`` and columns ``cols[x, j]`` (see :func:`_tap_index`):
    ``(N, h, w, taps_h, taps_w, C)``. One gather: XLA:CPU compiles it as one kernel, where
    a slice per tap (then concatenated or multiplied) compiled a kernel each."""
    return x[:, rows[:, None, :, None], cols[None, :, None, :]]


# Outputs of at most this many positions per image take the weight gradient as one
# im2col matmul: a row loop of so few rows costs more (run and compile) than it saves.
_ONE_MATMUL_MAX_POSITIONS = 64


def _im2col_weight_term(x, w, dilation):
    """Stride-1 VALID conv of NHWC ``x`` with HWIO ``w`` as im2col + matmul, written for its
    transpose with respect to ``w``: the weight gradient as matmuls. Returns NCHW.

    Each matmul is oriented ``(O, K) @ (K, M)``, whose transpose is the fast
    ``(O, M) @ (M, K)`` accumulation. Large outputs run one output row at a time
    (``M = N * W_out``): one row's patch matrix stays in cache where the whole
    output's would go out to memory, and the loop runs over rows, not images, so
    a batch-sharded input stays sharded. Small outputs run as one matmul.
    """
    n = x.shape[0]
    kh, kw, ci, co = w.shape
    (dh, dw) = dilation
    ho = x.shape[1] - (kh - 1) * dh
    wo = x.shape[2] - (kw - 1) * dw
    k = kh * kw * ci
    wm = w.reshape(k, co)

    def rows(xs, count):  # output rows [r, r + count) of the rows xs: (O, N, count, W_out)
        # Column (i, j, c) reads tap (i, j) of channel c; one gather (a concatenation of
        # kh * kw slices compiled up to twice as long and ran no faster).
        taps = _read_taps(
            xs, _tap_index(0, count, 1, 0, kh, dh, 0), _tap_index(0, wo, 1, 0, kw, dw, 0)
        )
        cols = taps.reshape(n * count * wo, k)
        y = lax.dot_general(wm, cols, (((0,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
        return y.reshape(co, n, count, wo)

    if ho * wo <= _ONE_MATMUL_MAX_POSITIONS:
        return rows(x, ho).transpose(1, 0, 2, 3)

    def row(r):
        return rows(lax.dynamic_slice_in_dim(x, r, (kh - 1) * dh + 1, axis=1), 1)[:, :, 0]

    # Rebuild the patches when transposing rather than keep them all as residuals.
    y = lax.map(jax.checkpoint(row), jnp.arange(ho))  # (H_out, O, N, W_out)
    return y.transpose(2, 1, 0, 3)


def _conv_dense(x, w, stride, pads, dilation, groups):
    """Dense/grouped conv, NCHW in and out, as a sum of stride-1 NHWC convs over stride phases."""
    n = x.shape[0]
    kh, kw = w.shape[2:]
    ho = _out_size(x.shape[2], kh, stride[0], dilation[0], *pads[0])
    wo = _out_size(x.shape[3], kw, stride[1], dilation[1], *pads[1])
    xp = _pad_zeros(x.transpose(0, 2, 3, 1), pads, (1, 2))  # NHWC
    wt = w.transpose(2, 3, 1, 0)  # HWIO
    c = xp.shape[3]
    groups_of = {}  # (taps_h, dil_h, taps_w, dil_w) -> [(input slice, kernel slice)]
    for ph in _phases(kh, stride[0], dilation[0]):
        for pw in _phases(kw, stride[1], dilation[1]):
            rows = ho - 1 + (ph.taps - 1) * ph.dil + 1  # input rows this phase reads
            cols = wo - 1 + (pw.taps - 1) * pw.dil + 1
            piece = lax.slice(
                xp,
                (0, ph.offset, pw.offset, 0),
                (
                    n,
                    ph.offset + (rows - 1) * stride[0] + 1,
                    pw.offset + (cols - 1) * stride[1] + 1,
                    c,
                ),
                (1, stride[0], stride[1], 1),
            )
            kernel = wt[ph.k0 :: ph.kstep, pw.k0 :: pw.kstep]
            groups_of.setdefault((ph.taps, ph.dil, pw.taps, pw.dil), []).append((piece, kernel))
    out = None
    for (_, dil_h, _, dil_w), parts in groups_of.items():
        if groups == 1 and len(parts) > 1:  # same sub-kernel shape: one conv over stacked channels
            parts = [
                (
                    jnp.concatenate([p for p, _ in parts], 3),
                    jnp.concatenate([k for _, k in parts], 2),
                )
            ]
        for piece, kernel in parts:
            y = _valid_conv(piece, kernel, (dil_h, dil_w), groups)
            out = y if out is None else out + y
    return out.transpose(0, 3, 1, 2)


def _valid_conv(x, k, dilation, groups):
    """Stride-1 VALID convolution of NHWC ``x`` with an HWIO kernel (one Eigen call on XLA:CPU)."""
    return lax.conv_general_dilated(
        x,
        k,
        (1, 1),
        "VALID",
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )


def _valid_conv_input_grad(ct, k, dilation, groups):
    """``d/dx <ct, _valid_conv(x, k)>``: the full correlation of ``ct`` with the flipped kernel,
    its input and output features swapped (per group) and laid out as HWIO again."""
    kh, kw, i_g, o = k.shape
    o_g = o // groups
    flipped = jnp.flip(k, (0, 1)).reshape(kh, kw, i_g, groups, o_g)
    kt = flipped.transpose(0, 1, 4, 3, 2).reshape(kh, kw, o_g, groups * i_g)
    full = [((kh - 1) * dilation[0],) * 2, ((kw - 1) * dilation[1],) * 2]
    return _valid_conv(_pad_zeros(ct, full, (1, 2)), kt, dilation, groups)


def _dense_input_grad(ct, w, in_shape, stride, pads, dilation, groups):
    """The input gradient of :func:`_conv_dense` (NCHW ``ct`` and result), written out.

    JAX's own transpose of a convolution keeps the kernel in place and swaps its
    feature dimensions in the dimension numbers (``01oi``); XLA:CPU cannot hand such
    a convolution to Eigen and emits a naive loop (~2.5x slower, and slow to
    compile). Here each stride phase's gradient is a convolution with the kernel
    transposed into HWIO, placed back into the padded input by an interior pad.
    """
    n, c, h, wd = in_shape
    kh, kw = w.shape[2:]
    ho, wo = ct.shape[2:]
    ctt = ct.transpose(0, 2, 3, 1)
    wt = w.transpose(2, 3, 1, 0)  # HWIO
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    zero = jnp.zeros((), ct.dtype)
    dxp = None
    for ph in _phases(kh, stride[0], dilation[0]):
        for pw in _phases(kw, stride[1], dilation[1]):
            kernel = wt[ph.k0 :: ph.kstep, pw.k0 :: pw.kstep]
            piece = _valid_conv_input_grad(ctt, kernel, (ph.dil, pw.dil), groups)
            rows, cols = piece.shape[1:3]
            placed = lax.pad(
                piece,
                zero,
                (
                    (0, 0, 0),
                    (ph.offset, hp - ph.offset - (rows - 1) * stride[0] - 1, stride[0] - 1),
                    (pw.offset, wp - pw.offset - (cols - 1) * stride[1] - 1, stride[1] - 1),
                    (0, 0, 0),
                ),
            )
            dxp = placed if dxp is None else dxp + placed
    # Undo the padding (a negative high pad cropped the input: pad it back with zeros).
    (lo_h, hi_h), (lo_w, hi_w) = pads
    dx = lax.pad(dxp, zero, ((0, 0, 0), (-lo_h, -hi_h, 0), (-lo_w, -hi_w, 0), (0, 0, 0)))
    return dx.transpose(0, 3, 1, 2)


def _tap_range(size: int, out: int, s: int, offset: int) -> tuple[int, int]:
    """Output rows ``[a, b)`` whose input row ``i * s + offset`` lies inside ``[0, size)``."""
    a = max(0, -(offset // s))  # ceil(-offset / s)
    b = min(out, (size - 1 - offset) // s + 1) if offset < size else 0
    return a, max(a, b)


def _tap_runs(size: int, out: int, k: int, s: int, d: int, pad: int):
    """The taps of one spatial dimension in runs that meet the same output rows: ``(first
    tap, taps, first output row, rows)`` for each run with rows (the rows are monotone
    in the tap, so equal ones are contiguous)."""
    runs: list[list[int]] = []
    for i in range(k):
        a, b = _tap_range(size, out, s, i * d - pad)
        if b > a and runs and runs[-1][2:] == [a, b - a]:
            runs[-1][1] += 1
        elif b > a:
            runs.append([i, 1, a, b - a])
    return [tuple(r) for r in runs]


def _conv_taps(x, w, stride, pads, dilation, groups):
    """The same conv as :func:`_conv_dense`, as matmuls over kernel taps (NHWC inside).

    Slower forward than XLA's convolution, but its transpose with respect to
    ``w`` is a ``(C_in * taps, N*H*W) @ (N*H*W, C_out)`` matmul per block of taps,
    where XLA:CPU runs JAX's native weight-gradient convolutions (a kernel the size
    of the image, often with a reversed window) through a slow generic loop. Each
    tap reads only the input rows it really meets (no padding), so the weight
    gradient forms exactly torch's products: a NaN/inf never meets a padding zero.
    Taps that meet the same output rows and columns form one block: one gather of
    their input pieces (:func:`_read_taps`) and one matmul.
    """
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    (sh, sw), (dh, dw) = stride, dilation
    ho = _out_size(h, kh, sh, dh, *pads[0])
    wo = _out_size(wd, kw, sw, dw, *pads[1])
    o, cg = w.shape[0], c // groups
    xt = x.transpose(0, 2, 3, 1)
    wt = w.reshape(groups, o // groups, cg, kh, kw)
    out = jnp.zeros((groups, n, ho, wo, o // groups), x.dtype)
    for i0, ti, a_h, rows in _tap_runs(h, ho, kh, sh, dh, pads[0][0]):
        for j0, tj, a_w, cols in _tap_runs(wd, wo, kw, sw, dw, pads[1][0]):
            piece = _read_taps(
                xt,
                _tap_index(a_h, rows, sh, i0, ti, dh, pads[0][0]),
                _tap_index(a_w, cols, sw, j0, tj, dw, pads[1][0]),
            )  # (N, h, w, ti, tj, C)
            k = ti * tj * cg  # the block's contraction: (tap row, tap column, channel)
            piece = piece.reshape(n, rows, cols, ti, tj, groups, cg)
            piece = piece.transpose(0, 1, 2, 5, 3, 4, 6).reshape(n, rows, cols, groups, k)
            kernel = wt[:, :, :, i0 : i0 + ti, j0 : j0 + tj].transpose(0, 1, 3, 4, 2)
            # (N, h, w, g, taps*I/g) x (g, O/g, taps*I/g) -> (g, N, h, w, O/g), at its rows
            term = lax.dot_general(
                piece,
                kernel.reshape(groups, o // groups, k),
                (((4,), (2,)), ((3,), (0,))),
                precision=lax.Precision.HIGHEST,
            )
            out = out + _pad_zeros(term, ((a_h, ho - a_h - rows), (a_w, wo - a_w - cols)), (2, 3))
    return out.transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo)


def _is_depthwise(x, w, groups) -> bool:
    return groups > 1 and groups == x.shape[1] and w.shape[1] == 1


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _conv_fast(x, w, stride, pads, dilation, groups):
    return _conv_dense(x, w, stride, pads, dilation, groups)


def _conv_fast_jvp(stride, pads, dilation, groups, primals, tangents):
    # Bilinear: d(x * w) = dx * w + x * dw. The dx term is built so that its transpose
    # (the input gradient) is a set of Eigen convolutions, the dw term so that its
    # transpose, the weight gradient, is a set of matmuls.
    (x, w), (dx, dw) = primals, tangents
    y = _conv_fast(x, w, stride, pads, dilation, groups)
    # Reverse mode runs the explicit input gradient (Eigen convolutions) rather than JAX's
    # transpose of the convolution.
    input_grad = functools.partial(
        _dense_input_grad,
        w=w,
        in_shape=x.shape,
        stride=stride,
        pads=pads,
        dilation=dilation,
        groups=groups,
    )

    def weight_term(dw):
        if groups == 1 and stride == (1, 1) and min(pads[0] + pads[1]) >= 0:
            xp = _pad_zeros(x.transpose(0, 2, 3, 1), pads, (1, 2))
            return _im2col_weight_term(xp, dw.transpose(2, 3, 1, 0), dilation)
        return _conv_taps(x, dw, stride, pads, dilation, groups)

    return y, _bilinear_tangent(y, dx, dw, input_grad, weight_term)


_conv_fast.defjvp(_conv_fast_jvp, symbolic_zeros=True)


def _conv(x: jax.Array, w: jax.Array, stride, pads: Pads, dilation, groups: int) -> jax.Array:
    """Cross-correlation of NCHW ``x`` with OIHW ``w``; ``pads`` per side, the high ones may
    be negative.

    Linear in ``x`` (``conv_transpose2d`` is its vjp) and in ``w``.
    """
    if _is_depthwise(x, w, groups):
        if stride == (1, 1):
            return _depthwise_s1(x, w, pads, dilation)
        return _conv_depthwise(x, w, stride, pads, dilation)
    return _conv_fast(x, w, stride, pads, dilation, groups)


def _input_vjp(conv, x, w, out_shape, stride, pads, dilation, groups):
    """``jax.vjp`` of ``conv(., w)`` with respect to its input (of ``out_shape``), applied to
    ``x``."""
    primal = jnp.zeros(out_shape, x.dtype)
    _, vjp = jax.vjp(lambda z: conv(z, w, stride, pads, dilation, groups), primal)
    return vjp(x)[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _transposed(x, w, out_shape, stride, pads, dilation, groups):
    return _input_vjp(_conv, x, w, out_shape, stride, pads, dilation, groups)


def _transposed_jvp(out_shape, stride, pads, dilation, groups, primals, tangents):
    # As for _conv_fast: the dw term is the input-vjp of the per-tap conv, whose transpose
    # with respect to dw (the transposed conv's weight gradient) is one matmul per tap.
    (x, w), (dx, dw) = primals, tangents
    y = _transposed(x, w, out_shape, stride, pads, dilation, groups)
    # The transposed conv's input gradient is the fast forward convolution itself.
    conv = functools.partial(_conv, w=w, stride=stride, pads=pads, dilation=dilation, groups=groups)
    return y, _bilinear_tangent(
        y,
        dx,
        dw,
        conv,
        lambda dw: _input_vjp(_conv_taps, x, dw, out_shape, stride, pads, dilation, groups),
    )


_transposed.defjvp(_transposed_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------- entry points


def conv2d(x: jax.Array, w: jax.Array, stride, pads: Pads, dilation, groups: int) -> jax.Array:
    """The cross-correlation of NCHW ``x`` with OIHW ``w`` (per-side pads, the high ones may be
    negative)."""
    return _conv(x, w, stride, pads, dilation, groups)


def conv_transpose2d(
    x: jax.Array, w: jax.Array, out_shape, stride, pads: Pads, dilation, groups: int
) -> jax.Array:
    """``jax.vjp`` of :func:`conv2d` (weight ``w``) w.r.t. its input of ``out_shape``, applied
    to ``x``."""
    if _is_depthwise(jax.ShapeDtypeStruct(out_shape, x.dtype), w, groups):
        return _input_vjp(_conv, x, w, out_shape, stride, pads, dilation, groups)
    return _transposed(x, w, out_shape, stride, pads, dilation, groups)
