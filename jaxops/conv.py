"""Convolutions: :func:`conv2d` and :func:`conv_transpose2d`.

Both ops share one linear core, :func:`_conv`, a 2-d cross-correlation with
per-side (possibly negative) padding. ``conv2d`` calls it directly;
``conv_transpose2d`` *is* ``jax.vjp`` of it with respect to its input, with the
high padding lowered by ``output_padding`` so that the vjp produces the extra
bottom/right rows and columns.

How the core computes (chosen by measurement on XLA:CPU, see the README):

- **Stride-phase decomposition.** A stride-``s`` convolution is rewritten as a
  sum of stride-1 convolutions, one per phase ``(k * d) mod s`` of the kernel
  taps, each reading a strided slice of the padded input and the taps of that
  phase (a dense sub-kernel, dilated by ``d / gcd(d, s)``). Every product in it
  is a product torch also forms: nothing is multiplied by inserted zeros, so
  the NaN/inf pattern matches torch, and the transpose of each piece is again a
  stride-1 convolution. Hence ``conv_transpose2d`` (the vjp) and the backward
  pass of a strided ``conv2d`` never run XLA's ``lhs_dilation`` convolution,
  which multiplies ``s**2 - 1`` zeros for every useful product.
- **Depthwise convolutions** (one input channel per group) are shifted
  multiply-adds, one per kernel tap, fused by XLA into a single loop; XLA:CPU
  would otherwise loop over the groups.
- Dense and grouped convolutions run in NHWC/HWIO internally (XLA:CPU's native
  convolution layout); the public contract stays NCHW/OIHW.
- **Dense (ungrouped) convolutions are matmuls**: im2col of one output row at a
  time, ``(N * W_out, kh * kw * C) @ (kh * kw * C, O)``, which XLA:CPU runs about
  1.5x faster than its own convolution. The custom JVP keeps XLA's convolution
  for the input tangent (its transpose, the input gradient, is a fast conv) and
  uses the transposed matmul orientation for the weight tangent, so the weight
  gradient is a row-by-row ``(O, N * W_out) @ (N * W_out, K)`` accumulation.

Everything is built from ``lax`` primitives that JAX differentiates natively,
so ``grad``, ``jvp``, ``jacfwd``, ``vmap`` and second order all work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxops import _utils

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_JNP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

Pads = tuple[tuple[int, int], tuple[int, int]]


# ---------------------------------------------------------------- the linear core


class _Phase(NamedTuple):
    """The kernel taps of one stride phase along one spatial dimension.

    Taps ``k0, k0 + kstep, ...`` (``count`` of them) all read input rows
    ``i * stride + offset + m * dil`` for output row ``i`` and tap number ``m``.
    """

    offset: int
    k0: int
    kstep: int
    count: int
    dil: int


@functools.cache
def _phases(k: int, s: int, d: int) -> tuple[_Phase, ...]:
    """Splits the taps ``0..k-1`` of one dimension by the phase ``(tap * d) mod s``."""
    g = math.gcd(d, s)
    phases = []
    for k0 in range(min(k, s // g)):
        count = len(range(k0, k, s // g))
        phases.append(_Phase(offset=k0 * d, k0=k0, kstep=s // g, count=count, dil=d // g))
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
    dy = jnp.zeros_like(y)
    if _present(dx):
        in_hw = (x.shape[2], x.shape[3], x.shape[1])
        grad = functools.partial(
            _depthwise_input_grad, w=w, pads=pads, dilation=dilation, in_hw=in_hw
        )
        dy = jax.linear_transpose(grad, jax.ShapeDtypeStruct(y.shape, y.dtype))(dx)[0]
    if _present(dw):
        dy = dy + _depthwise_weight_term(x, dw, pads, dilation)
    return y, dy


_depthwise_s1.defjvp(_depthwise_s1_jvp, symbolic_zeros=True)


def _matmul_conv(x, w, dilation, channels_first=False):
    """Stride-1 VALID conv of NHWC ``x`` with HWIO ``w`` as im2col + matmul, one output row at a time.

    XLA:CPU's matmul runs about twice as fast as its convolution, and one output
    row's patch matrix, ``(N * W_out, kh * kw * C)``, stays in cache where the
    whole output's would go out to memory. The loop runs over rows, not images,
    so a batch-sharded input stays sharded.

    Returns NCHW. ``channels_first`` orients each row's matmul as
    ``(O, K) @ (K, N * W_out)``: slower forward, but its transpose with respect to
    ``w`` (the weight gradient, accumulated row by row) is the fast orientation.
    """
    n = x.shape[0]
    kh, kw, ci, co = w.shape
    (dh, dw) = dilation
    ho = x.shape[1] - (kh - 1) * dh
    wo = x.shape[2] - (kw - 1) * dw
    k = kh * kw * ci
    wm = w.reshape(k, co)
    hi = lax.Precision.HIGHEST

    def row(r):  # output row r: (N, W_out, O), or (O, N, W_out) with channels_first
        xs = lax.dynamic_slice_in_dim(x, r, (kh - 1) * dh + 1, axis=1)
        cols = jnp.concatenate(
            [xs[:, i * dh, j * dw : j * dw + wo] for i in range(kh) for j in range(kw)], axis=-1
        ).reshape(n * wo, k)
        if channels_first:
            return lax.dot_general(wm, cols, (((0,), (1,)), ((), ())), precision=hi).reshape(co, n, wo)
        return lax.dot(cols, wm, precision=hi).reshape(n, wo, co)

    # Rebuild the patches when transposing rather than keep them all as residuals.
    y = lax.map(jax.checkpoint(row), jnp.arange(ho))
    return y.transpose(2, 1, 0, 3) if channels_first else y.transpose(1, 3, 0, 2)


def _conv_dense(x, w, stride, pads, dilation, groups, matmul=False):
    """Dense/grouped conv, NCHW in and out, as a sum of stride-1 NHWC convs over stride phases."""
    n = x.shape[0]
    kh, kw = w.shape[2:]
    ho = _out_size(x.shape[2], kh, stride[0], dilation[0], *pads[0])
    wo = _out_size(x.shape[3], kw, stride[1], dilation[1], *pads[1])
    xp = _pad_zeros(x.transpose(0, 2, 3, 1), pads, (1, 2))  # NHWC
    wt = w.transpose(2, 3, 1, 0)  # HWIO
    c = xp.shape[3]
    groups_of = {}  # (count_h, dil_h, count_w, dil_w) -> [(input slice, kernel slice)]
    for ph in _phases(kh, stride[0], dilation[0]):
        for pw in _phases(kw, stride[1], dilation[1]):
            rows = ho - 1 + (ph.count - 1) * ph.dil + 1  # input rows this phase reads
            cols = wo - 1 + (pw.count - 1) * pw.dil + 1
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
            groups_of.setdefault((ph.count, ph.dil, pw.count, pw.dil), []).append((piece, kernel))
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
            if matmul and groups == 1:
                y = _matmul_conv(piece, kernel, (dil_h, dil_w)).transpose(0, 2, 3, 1)
            else:
                y = lax.conv_general_dilated(
                    piece,
                    kernel,
                    (1, 1),
                    "VALID",
                    rhs_dilation=(dil_h, dil_w),
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                    feature_group_count=groups,
                    precision=lax.Precision.HIGHEST,
                )
            out = y if out is None else out + y
    return out.transpose(0, 3, 1, 2)


def _tap_range(size: int, out: int, s: int, offset: int) -> tuple[int, int]:
    """Output rows ``[a, b)`` whose input row ``i * s + offset`` lies inside ``[0, size)``."""
    a = max(0, -(offset // s))  # ceil(-offset / s)
    b = min(out, (size - 1 - offset) // s + 1) if offset < size else 0
    return a, max(a, b)


def _conv_taps(x, w, stride, pads, dilation, groups):
    """The same conv as :func:`_conv_dense`, as one matmul per kernel tap (NHWC inside).

    Slower forward than XLA's convolution, but its transpose with respect to
    ``w`` is one ``(C_in, N*H*W) @ (N*H*W, C_out)`` matmul per tap, where XLA:CPU
    runs JAX's native weight-gradient convolutions (a kernel the size of the
    image, often with a reversed window) through a slow generic loop. Each tap
    reads only the input rows it really meets (no padding), so the weight
    gradient forms exactly torch's products: a NaN/inf never meets a padding zero.
    """
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    (sh, sw), (dh, dw) = stride, dilation
    ho = _out_size(h, kh, sh, dh, *pads[0])
    wo = _out_size(wd, kw, sw, dw, *pads[1])
    o = w.shape[0]
    xt = x.transpose(0, 2, 3, 1)
    wt = w.reshape(groups, o // groups, c // groups, kh, kw)
    out = jnp.zeros((groups, n, ho, wo, o // groups), x.dtype)
    for i in range(kh):
        a_h, b_h = _tap_range(h, ho, sh, i * dh - pads[0][0])
        for j in range(kw):
            a_w, b_w = _tap_range(wd, wo, sw, j * dw - pads[1][0])
            if a_h == b_h or a_w == b_w:
                continue
            r0, c0 = a_h * sh + i * dh - pads[0][0], a_w * sw + j * dw - pads[1][0]
            piece = lax.slice(
                xt,
                (0, r0, c0, 0),
                (n, r0 + (b_h - a_h - 1) * sh + 1, c0 + (b_w - a_w - 1) * sw + 1, c),
                (1, sh, sw, 1),
            ).reshape(n, b_h - a_h, b_w - a_w, groups, c // groups)
            # (N, h, w, g, I/g) x (g, O/g, I/g) -> (g, N, h, w, O/g), placed at its output rows
            term = lax.dot_general(
                piece,
                wt[:, :, :, i, j],
                (((4,), (2,)), ((3,), (0,))),
                precision=lax.Precision.HIGHEST,
            )
            out = out + _pad_zeros(term, ((a_h, ho - b_h), (a_w, wo - b_w)), (2, 3))
    return out.transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo)


def _is_depthwise(x, w, groups) -> bool:
    return groups > 1 and groups == x.shape[1] and w.shape[1] == 1


def _present(t) -> bool:
    return not isinstance(t, jax.custom_derivatives.SymbolicZero)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_fast(x, w, stride, pads, dilation, groups, matmul=True):
    return _conv_dense(x, w, stride, pads, dilation, groups, matmul)


def _conv_fast_jvp(stride, pads, dilation, groups, matmul, primals, tangents):
    # Bilinear: d(x * w) = dx * w + x * dw. The value is computed as matmuls (dense
    # convs); the dx term keeps XLA's convolution, because its transpose (the input
    # gradient) is then a fast stride-1 conv where the matmul form's is a slow
    # scatter of patches. The dw term is written per tap so that its transpose,
    # the weight gradient, is a set of matmuls.
    (x, w), (dx, dw) = primals, tangents
    y = _conv_fast(x, w, stride, pads, dilation, groups, matmul)
    dy = jnp.zeros_like(y)
    if _present(dx):
        dy = _conv_fast(dx, w, stride, pads, dilation, groups, False)
    if _present(dw):
        if matmul and groups == 1 and stride == (1, 1) and min(pads[0] + pads[1]) >= 0:
            xp = _pad_zeros(x.transpose(0, 2, 3, 1), pads, (1, 2))
            dy = dy + _matmul_conv(xp, dw.transpose(2, 3, 1, 0), dilation, channels_first=True)
        else:
            dy = dy + _conv_taps(x, dw, stride, pads, dilation, groups)
    return y, dy


_conv_fast.defjvp(_conv_fast_jvp, symbolic_zeros=True)


def _conv(x: jax.Array, w: jax.Array, stride, pads: Pads, dilation, groups: int) -> jax.Array:
    """Cross-correlation of NCHW ``x`` with OIHW ``w``; ``pads`` per side, the high ones may be negative.

    Linear in ``x`` (``conv_transpose2d`` is its vjp) and in ``w``.
    """
    if _is_depthwise(x, w, groups):
        if stride == (1, 1):
            return _depthwise_s1(x, w, pads, dilation)
        return _conv_depthwise(x, w, stride, pads, dilation)
    return _conv_fast(x, w, stride, pads, dilation, groups)


def _input_vjp(conv, x, w, out_shape, stride, pads, dilation, groups):
    """``jax.vjp`` of ``conv(., w)`` with respect to its input (of ``out_shape``), applied to ``x``."""
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
    dy = jnp.zeros_like(y)
    if _present(dx):
        dy = _transposed(dx, w, out_shape, stride, pads, dilation, groups)
    if _present(dw):
        dy = dy + _input_vjp(_conv_taps, x, dw, out_shape, stride, pads, dilation, groups)
    return y, dy


_transposed.defjvp(_transposed_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------- jitted cores


def _add_bias(y: jax.Array, b: jax.Array) -> jax.Array:
    """Adds the per-channel bias in at least float32, rounding once.

    The bias gradient is the cotangent summed over (N, H, W); computing the add in float32
    makes that sum accumulate in float32 for half-precision inputs, as torch's does.
    """
    acc = jnp.promote_types(y.dtype, jnp.float32)
    return (y.astype(acc) + b.astype(acc)[:, None, None]).astype(y.dtype)


@functools.partial(
    jax.jit, static_argnames=("stride", "pads", "dilation", "groups", "padding_mode")
)
def _conv2d(x, w, b, *, stride, pads, dilation, groups, padding_mode):
    if padding_mode != "zeros":
        x = jnp.pad(x, ((0, 0), (0, 0), *pads), mode=_JNP_PAD_MODE[padding_mode])
        pads = ((0, 0), (0, 0))
    y = _conv(x, w, stride, pads, dilation, groups)
    return y if b is None else _add_bias(y, b)


@functools.partial(
    jax.jit, static_argnames=("stride", "padding", "output_padding", "dilation", "groups")
)
def _conv_transpose2d(x, w, b, *, stride, padding, output_padding, dilation, groups):
    n, _, h, wd = x.shape
    kh, kw = w.shape[2:]
    out_hw = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        for size, k, s, p, op, d in zip(
            (h, wd), (kh, kw), stride, padding, output_padding, dilation
        )
    )
    # The conv whose input-vjp this is: the high side padded op fewer rows, so that an
    # input of out_hw rows gives exactly the h rows of x (the extra op rows are output).
    pads = tuple((p, p - op) for p, op in zip(padding, output_padding))
    out_shape = (n, w.shape[1] * groups, *out_hw)
    if _is_depthwise(jax.ShapeDtypeStruct(out_shape, x.dtype), w, groups):
        y = _input_vjp(_conv, x, w, out_shape, stride, pads, dilation, groups)
    else:
        y = _transposed(x, w, out_shape, stride, pads, dilation, groups)
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
            f"kernel size (={tuple(w.shape[2:])}) must be positive, got weight of shape {tuple(w.shape)}",
        )


def _check_groups(op: str, groups: Any) -> int:
    groups = _utils.as_int(op, "groups", groups)
    _utils.check_positive(op, "groups", (groups,))
    return groups


def _check_bias(op: str, b: jax.Array | None, channels: int) -> None:
    if b is not None and b.shape != (channels,):
        raise _utils.fail(
            op,
            f"bias must have shape ({channels},) (one value per output channel), got {tuple(b.shape)}",
        )


def _check_spatial(op: str, x: jax.Array) -> None:
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise _utils.fail(
            op, f"input spatial size must be non-empty, got input of shape {tuple(x.shape)}"
        )


def _batched(x: jax.Array) -> tuple[jax.Array, bool]:
    return (x, False) if x.ndim == 4 else (x[None], True)


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
) -> jax.Array:
    r"""2-d cross-correlation, like ``torch.nn.functional.conv2d`` (plus ``nn.Conv2d``'s ``padding_mode``).

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
            non-integer sizes.

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
    op = "conv2d"
    x, w, b = _check_arrays(op, input, weight, bias)
    stride = _utils.as_tuple(op, "stride", stride)
    dilation = _utils.as_tuple(op, "dilation", dilation)
    groups = _check_groups(op, groups)
    _utils.check_positive(op, "stride", stride)
    _utils.check_positive(op, "dilation", dilation)
    _utils.check_choice(op, "padding_mode", padding_mode, PADDING_MODES)
    _check_kernel(op, w)
    kernel = tuple(w.shape[2:])
    if isinstance(padding, str):
        _utils.check_choice(op, "padding", padding, ("valid", "same"))
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        else:
            if stride != (1, 1):
                raise _utils.fail(
                    op,
                    f"padding='same' is not supported for strided convolutions (stride={stride})",
                )
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pads = tuple((t // 2, t - t // 2) for t in totals)
    else:
        pad = _utils.as_tuple(op, "padding", padding)
        _utils.check_nonnegative(op, "padding", pad)
        pads = tuple((p, p) for p in pad)

    c_in, c_out = x.shape[-3], w.shape[0]
    if c_out == 0:
        raise _utils.fail(
            op,
            f"weight must have at least one output channel, got weight of shape {tuple(w.shape)}",
        )
    if c_out % groups:
        raise _utils.fail(
            op,
            f"weight's out channels (={c_out}) must be divisible by groups (={groups}), got weight of shape {tuple(w.shape)}",
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
    if padding_mode == "reflect" and any(max(lo, hi) >= n for (lo, hi), n in zip(pads, size)):
        raise _utils.fail(
            op,
            f"reflect padding {pads} must be smaller than the input's spatial size {tuple(size)}",
        )
    if padding_mode == "circular" and any(max(lo, hi) > n for (lo, hi), n in zip(pads, size)):
        raise _utils.fail(
            op, f"circular padding {pads} must not exceed the input's spatial size {tuple(size)}"
        )
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(size, pads))
    effective = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if any(e > p for e, p in zip(effective, padded)):
        raise _utils.fail(
            op,
            f"kernel size {kernel} with dilation {dilation} spans {effective}, larger than the "
            f"padded input {padded}",
        )
    x4, unbatched = _batched(x)
    y = _conv2d(
        x4,
        w,
        b,
        stride=stride,
        pads=pads,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
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
            non-integer sizes.

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
    op = "conv_transpose2d"
    x, w, b = _check_arrays(op, input, weight, bias)
    stride = _utils.as_tuple(op, "stride", stride)
    padding = _utils.as_tuple(op, "padding", padding)
    output_padding = _utils.as_tuple(op, "output_padding", output_padding)
    dilation = _utils.as_tuple(op, "dilation", dilation)
    groups = _check_groups(op, groups)
    _utils.check_positive(op, "stride", stride)
    _utils.check_positive(op, "dilation", dilation)
    _utils.check_nonnegative(op, "padding", padding)
    _utils.check_nonnegative(op, "output_padding", output_padding)
    _check_kernel(op, w)
    kernel = tuple(w.shape[2:])
    c_in = x.shape[-3]
    if w.shape[0] % groups:
        raise _utils.fail(
            op,
            f"weight's in channels (={w.shape[0]}) must be divisible by groups (={groups}), got weight of shape {tuple(w.shape)}",
        )
    if w.shape[0] != c_in:
        raise _utils.fail(
            op,
            f"input has {c_in} channels but weight of shape {tuple(w.shape)} expects {w.shape[0]} (weight.shape[0])",
        )
    c_out = w.shape[1] * groups
    _check_bias(op, b, c_out)
    _check_spatial(op, x)
    size = x.shape[-2:]
    smallest = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + 1
        for n, s, p, d, k in zip(size, stride, padding, dilation, kernel)
    )
    if output_size is not None:
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
        if len(requested) not in (2, x.ndim):
            raise _utils.fail(
                op,
                f"output_size must have 2 or {x.ndim} elements for a {x.ndim}-d input, got {output_size!r}",
            )
        requested = requested[-2:]
        largest = tuple(lo + s - 1 for lo, s in zip(smallest, stride))
        if any(not lo <= r <= hi for r, lo, hi in zip(requested, smallest, largest)):
            raise _utils.fail(
                op,
                f"requested an output size of {requested}, but valid sizes range from {smallest} to "
                f"{largest} (for an input of spatial size {tuple(size)})",
            )
        output_padding = tuple(r - lo for r, lo in zip(requested, smallest))
    if any(op_ >= s and op_ >= d for op_, s, d in zip(output_padding, stride, dilation)):
        raise _utils.fail(
            op,
            f"output_padding (={output_padding}) must be smaller than either stride (={stride}) "
            f"or dilation (={dilation})",
        )
    out_hw = tuple(lo + op_ for lo, op_ in zip(smallest, output_padding))
    if any(n <= 0 for n in out_hw):
        raise _utils.fail(
            op,
            f"output spatial size {out_hw} must be positive (input {tuple(size)}, padding {padding})",
        )
    x4, unbatched = _batched(x)
    y = _conv_transpose2d(
        x4,
        w,
        b,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )
    return y[0] if unbatched else y
