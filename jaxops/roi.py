"""Region-of-interest ops: :func:`roi_pool` and :func:`roi_align` (torchvision semantics).

Both ops follow torchvision's CPU kernels to the last rounding step (bin edges,
sampling positions and divisions are computed in the input dtype, in the same
order as the C++ loops), but are built so that memory and work do not grow as
``K x C x out_h x out_w x H x W``:

- ``roi_pool`` answers every bin's rectangle maximum from a 2-D sparse table
  (maxima of all power-of-two blocks, only as deep as the longest bin needs),
  so a bin of any size is the best of four table entries. The forward uses a
  value-only table; its ``custom_jvp`` is the JVP of the gather form (a table
  that also holds the position of the first maximum, then a gather from the
  input at that position, which JAX differentiates natively: the VJP is a
  scatter-add to the argmax, accumulating over overlapping RoIs, exactly
  torchvision's backward).
- ``roi_align`` is separable: for each RoI the bilinear samples of a bin along
  one axis collapse into one row of a small ``(out, H)`` (resp. ``(out, W)``)
  interpolation matrix, and the output is ``My @ X @ Mx^T / count``. A
  ``custom_jvp`` keeps torchvision's NaN/inf pattern (which depends on exactly
  which pixels each sample reads) in the primal while the tangent is the plain
  linear map, so forward and reverse mode both work.

Everything above is stated once here. How XLA computes two parts of it is chosen
per backend (:mod:`jaxops._platform`):

- **portable** (GPU, TPU, any backend but CPU): roi_pool's table with every
  doubling step written out and always at full depth (``floor(log2(H)) + 1`` x
  ``floor(log2(W)) + 1`` levels, which serves any bin: no loop, no branch on the
  data); roi_align's NaN/inf pattern computed always, from 0/1 flags in
  bfloat16 contractions (exact at any precision), its contractions at the
  ``precision`` asked for (``Precision.HIGHEST`` by default), over all RoIs at
  once unless the intermediate would pass 256 MiB (then chunks of RoIs in a loop).
- **cpu**: roi_pool's table built by ``scan`` only as deep as the longest bin
  needs (a ``switch`` over three depths); roi_align over cache-sized chunks of
  RoIs of one image each, its pattern behind a ``cond`` on a finite image
  (:mod:`jaxops._cpu.roi`).

Both compute the same values (roi_pool bit for bit, gradient included; roi_align
up to the order in which its contractions sum).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxops import _checks, _platform, _utils
from jaxops._cpu import roi as _cpu

_FLT_MAX = float(np.finfo(np.float32).max)
# Sampling candidates per (bin, row) in adaptive roi_align: consecutive samples
# are more than 0.5 apart, so at most 4 touch one row; 7 leaves room for the
# float error in locating the first one.
_CANDIDATES = 7


# ------------------------------------------------------------------ argument handling


def _same_dtype(op: str, name: str, value: Any, dtype: Any) -> None:
    # Compared before conversion: with x64 off, JAX would quietly turn float64 into float32.
    got = np.dtype(getattr(value, "dtype", np.float64))
    if got != dtype:
        raise _utils.fail(op, f"{name} dtype ({got}) must equal input dtype ({dtype})", TypeError)


def _boxes_to_rois(op: str, boxes: Any, dtype: Any) -> jax.Array:
    """``(K, 5)`` array or list of ``(L_i, 4)`` arrays -> ``(K, 5)`` rois of ``dtype``."""
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            _utils.check_array(op, f"boxes[{i}]", b)
            _same_dtype(op, f"boxes[{i}]", b, dtype)
            b = jnp.asarray(b)
            if b.ndim != 2 or b.shape[1] != 4:
                raise _utils.fail(op, f"boxes[{i}] must have shape (L, 4), got {b.shape}")
            parts.append(jnp.concatenate([jnp.full((b.shape[0], 1), i, dtype), b], axis=1))
        if not parts:
            return jnp.zeros((0, 5), dtype)
        return jnp.concatenate(parts, axis=0)
    _utils.check_array(op, "boxes", boxes)
    rois = jnp.asarray(boxes)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise _utils.fail(
            op, f"boxes must be a (K, 5) array or a list of (L, 4) arrays, got shape {rois.shape}"
        )
    _same_dtype(op, "boxes", boxes, dtype)
    return rois


def _prepare(op: str, input: Any, boxes: Any, output_size: Any, spatial_scale: Any):
    _utils.check_array(op, "input", input)
    _utils.check_ndim(op, "input", input, (4,))
    _utils.check_floating(op, "input", input)
    x = jnp.asarray(input)
    rois = _boxes_to_rois(op, boxes, np.dtype(getattr(input, "dtype", x.dtype)))
    rois = rois.astype(x.dtype)
    size = _utils.as_tuple(op, "output_size", output_size)
    _utils.check_positive(op, "output_size", size)
    if isinstance(spatial_scale, (bool, np.bool_)) or not isinstance(spatial_scale, numbers.Real):
        raise _utils.fail(
            op,
            f"spatial_scale must be a Python float, got {type(spatial_scale).__name__}",
            TypeError,
        )
    n = x.shape[0]
    index = rois[:, 0]
    # torchvision truncates the index to int; (-1, N) is exactly what truncates into [0, N).
    in_range = (index > -1) & (index < n)
    bad = jnp.where(in_range, 0, index)
    _checks.data_check(
        jnp.all(in_range),
        op,
        "boxes batch index (={bad}) is out of range for an input of batch size " + str(n),
        bad=bad[jnp.argmin(in_range)] if rois.shape[0] else jnp.zeros((), x.dtype),
    )
    return x, rois, size, float(spatial_scale)


def _exact_div(a: jax.Array, d: Any) -> jax.Array:
    """``a / d`` correctly rounded, as C computes it. XLA rewrites a division by a
    constant or by a broadcast into a multiplication by the reciprocal, which moves
    bin edges by an ulp (``7 / 3 * 3`` becomes 7.0000005, whose ceil is 8): the
    divisor is therefore materialised at full shape behind an optimization barrier."""
    d = a * 0 + jnp.asarray(d, a.dtype)  # full shape, and batched along with ``a`` under vmap
    return a / lax.optimization_barrier(d)


def _round_half_away(v: jax.Array) -> jax.Array:
    """C's ``round``: halves go away from zero (``jnp.round`` rounds them to even)."""
    return jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5)


def _batch_rows(rois: jax.Array, n: int):
    index = rois[:, 0]
    valid = (index > -1) & (index < n)
    b = jnp.where(valid, index, 0).astype(jnp.int32)  # trunc toward zero, as C's (int)
    return b, valid


# ------------------------------------------------------------------ roi_pool


@dataclasses.dataclass(frozen=True)
class _Pool:
    """A validated roi_pool: every field static and hashable."""

    output_size: tuple[int, int]
    spatial_scale: float


def _combine(va, ia, vb, ib):
    """The better of two (max value, first position) candidates."""
    take_b = (vb > va) | ((vb == va) & (ib < ia))
    return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)


def _table_step(v, shift, axis: int):
    """One doubling step of the sparse table along ``axis`` (1: rows, 2: columns): each
    entry meets the one ``shift(a, fill)`` brings from the following block (``fill``
    past the map's end). Values keep the larger; with positions (``v`` a pair), the
    first maximum in row-major order wins ties."""
    if not isinstance(v, tuple):
        return jnp.maximum(v, shift(v, -jnp.inf))
    cv, ci = v
    big = cv.shape[1] * cv.shape[2]  # past every position
    sv, si = shift(cv, -jnp.inf), shift(ci, big)
    if axis == 1:  # the shifted block lies on later rows: it wins only when greater
        take = sv > cv
        return jnp.where(take, sv, cv), jnp.where(take, si, ci)
    return _combine(cv, ci, sv, si)


def _levels(n: int) -> int:
    return max(n, 1).bit_length()  # floor(log2(n)) + 1


def _floor_log2(n: jax.Array) -> jax.Array:
    return 31 - lax.clz(jnp.maximum(n, 1).astype(jnp.int32))


def _unrolled_table(v, levels_h: int, levels_w: int, step):
    """The portable sparse table: every doubling step written out (static shifts, no
    loop), stacked ``(levels_h * levels_w, N, H, W, C)`` in the order of
    :func:`jaxops._cpu.roi.sparse_table` (row level major)."""

    def shift(s: int, axis: int):
        def moved(a, fill):
            n = a.shape[axis]
            config = [(0, 0, 0)] * a.ndim
            config[axis] = (0, min(s, n), 0)
            return lax.pad(
                lax.slice_in_dim(a, min(s, n), n, axis=axis), jnp.asarray(fill, a.dtype), config
            )

        return moved

    entries = []
    row = v
    for a in range(levels_h):
        if a:
            row = step(row, shift(1 << (a - 1), 1), 1)
        entry = row
        entries.append(entry)
        for b in range(1, levels_w):
            entry = step(entry, shift(1 << (b - 1), 2), 2)
            entries.append(entry)
    return jax.tree.map(lambda *t: jnp.stack(t), *entries)


def _full_depth(lookup, ah, aw, map_hw, out_hw):
    """The portable depth: the full table, ``floor(log2(H)) + 1`` x ``floor(log2(W)) + 1``
    levels, serves every bin (a bin is at most the map long), with no branch on the data."""
    return lookup(_levels(map_hw[0]), _levels(map_hw[1]))


# How each formulation builds the table and picks its depth (jaxops._cpu.roi says why).
_TABLES = {"cpu": (_cpu.sparse_table, _cpu.bin_maxima), "portable": (_unrolled_table, _full_depth)}


def _bin_maxima(form: str, v0, i0, b, hs, he, ws, we):
    """Per bin and channel the maximum of ``v0`` (N, H, W, C) over the bin's rectangle
    (and its first position, when ``i0`` is given): a sparse table (maxima of all
    power-of-two blocks), four lookups. ``form``: ``"cpu"`` or ``"portable"``."""
    n, h, w, c = v0.shape
    k, oh = hs.shape
    ow = ws.shape[1]
    len_h, len_w = he - hs, we - ws
    ah, aw = _floor_log2(len_h), _floor_log2(len_w)
    h2 = jnp.maximum(he - (1 << ah), 0)
    w2 = jnp.maximum(we - (1 << aw), 0)
    tabulate, depth = _TABLES[form]

    def lookup(levels_h, levels_w):
        table = tabulate(v0 if i0 is None else (v0, i0), levels_h, levels_w, _table_step)
        table = jax.tree.map(lambda t: t.reshape(-1, c), table)

        def row(hh, ww):
            level = ah[:, :, None] * levels_w + aw[:, None, :]
            return (
                ((level * n + b[:, None, None]) * h + hh[:, :, None]) * w + ww[:, None, :]
            ).reshape(-1)

        best = None
        for hh in (hs, h2):
            for ww in (ws, w2):
                q = row(hh, ww)
                cand = jax.tree.map(lambda t, q=q: jnp.take(t, q, axis=0, mode="clip"), table)
                if best is None:
                    best = cand
                elif i0 is None:
                    best = jnp.maximum(best, cand)
                else:
                    best = _combine(*best, *cand)
        return jax.tree.map(lambda t: t.reshape(k, oh, ow, c), best)

    return depth(lookup, ah, aw, (h, w), (oh, ow))


def _pool_inputs(x):
    """``x`` channels-last with values that can never win (NaN, and anything <= -FLT_MAX,
    torchvision's initial maximum) replaced by -inf."""
    xt = jnp.transpose(lax.stop_gradient(x), (0, 2, 3, 1))  # (N, H, W, C)
    return jnp.where(xt > jnp.asarray(-_FLT_MAX, x.dtype), xt, -jnp.inf)


def _pool_finish(best_v, found_or_none, geom, dt):
    """Empty bins -> 0, bins with no candidate -> -FLT_MAX, bad batch index -> NaN;
    (K, oh, ow, C) -> (K, C, oh, ow)."""
    b, valid, hs, he, ws, we = geom
    empty = ((he - hs) <= 0)[:, :, None] | ((we - ws) <= 0)[:, None, :]
    found = (best_v > -jnp.inf) & ~empty[..., None] if found_or_none is None else found_or_none
    floor = jnp.asarray(-_FLT_MAX, dt)
    out = jnp.where(found, best_v, jnp.where(empty[..., None], jnp.zeros((), dt), floor))
    out = jnp.where(valid[:, None, None, None], out, jnp.nan)
    return jnp.transpose(out, (0, 3, 1, 2))


def _pool_by_gather(form: str, x, geom):
    """roi_pool as a gather from ``x`` at each bin's first argmax: JAX differentiates
    it natively (the VJP is a scatter-add to the argmax)."""
    b, valid, hs, he, ws, we = geom
    n, c, h, w = x.shape
    v0 = _pool_inputs(x)
    pos = jnp.arange(h, dtype=jnp.int32)[:, None] * w + jnp.arange(w, dtype=jnp.int32)
    i0 = jnp.broadcast_to(pos[None, :, :, None], v0.shape)
    best_v, best_i = _bin_maxima(form, v0, i0, b, hs, he, ws, we)
    empty = ((he - hs) <= 0)[:, :, None] | ((we - ws) <= 0)[:, None, :]
    found = (best_v > -jnp.inf) & ~empty[..., None]
    k, oh, ow, _ = best_v.shape
    src = b[:, None, None, None] * (h * w) + jnp.where(found, best_i, 0)
    flat = jnp.transpose(x, (0, 2, 3, 1)).reshape(n * h * w, c)
    picked = jnp.take_along_axis(flat, src.reshape(-1, c), axis=0, mode="clip").reshape(
        k, oh, ow, c
    )
    return _pool_finish(picked, found, geom, x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _pool(form: str, x, geom):
    """Forward from a value-only table (no positions: about a third of the work); the
    JVP is that of :func:`_pool_by_gather`, so every AD mode sees the gather form."""
    b, valid, hs, he, ws, we = geom
    best_v = _bin_maxima(form, _pool_inputs(x), None, b, hs, he, ws, we)
    return _pool_finish(best_v, None, geom, x.dtype)


@_pool.defjvp
def _pool_jvp(form, primals, tangents):
    x, geom = primals
    return jax.jvp(lambda x: _pool_by_gather(form, x, geom), (x,), (tangents[0],))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _roi_pool(x: jax.Array, rois: jax.Array, cfg: _Pool) -> jax.Array:
    n, c, h, w = x.shape
    oh, ow = cfg.output_size
    dt = x.dtype
    rois = lax.stop_gradient(rois)  # torchvision gives boxes no gradient
    b, valid = _batch_rows(rois, n)

    # Bin edges, in the input dtype and in torchvision's order of operations.
    r = _round_half_away(rois[:, 1:] * jnp.asarray(cfg.spatial_scale, dt)).astype(jnp.int32)
    sw, sh, ew, eh = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
    bin_h = _exact_div(jnp.maximum(eh - sh + 1, 1).astype(dt), oh)
    bin_w = _exact_div(jnp.maximum(ew - sw + 1, 1).astype(dt), ow)

    def edges(bin_size, start, count, limit):
        p = jnp.arange(count, dtype=dt)
        lo = jnp.floor(p * bin_size[:, None]).astype(jnp.int32) + start[:, None]
        hi = jnp.ceil((p + 1) * bin_size[:, None]).astype(jnp.int32) + start[:, None]
        return jnp.clip(lo, 0, limit), jnp.clip(hi, 0, limit)

    hs, he = edges(bin_h, sh, oh, h)  # (K, oh)
    ws, we = edges(bin_w, sw, ow, w)  # (K, ow)
    geom = (b, valid, hs, he, ws, we)
    return _platform.choose(
        x,
        geom,
        cpu=functools.partial(_pool, "cpu"),
        portable=functools.partial(_pool, "portable"),
    )


def roi_pool(
    input: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> jax.Array:
    r"""Max pooling over regions of interest, like ``torchvision.ops.roi_pool``.

    Each box is scaled by ``spatial_scale`` and its corners rounded half away
    from zero; the RoI (at least 1x1) is cut into ``out_h x out_w`` bins with
    edges ``floor(i * bin)`` / ``ceil((i + 1) * bin)`` (offset by the RoI start,
    clipped to the map), and each bin outputs its maximum.

    .. math::
        \text{out}: (K, C, \text{out}_h, \text{out}_w), \qquad
        \text{out}[k, c, i, j] = \max_{(h, w) \in \text{bin}_{k,i,j}} x[b_k, c, h, w]

    Args:
        input: feature map ``(N, C, H, W)``, floating dtype.
        boxes: ``(K, 5)`` rows ``(batch_index, x1, y1, x2, y2)``, or a list of
            ``(L_i, 4)`` arrays ``(x1, y1, x2, y2)`` whose list position is the
            batch index; same dtype as ``input``. Boxes are not differentiated.
        output_size: ``out_h, out_w``, an int or a pair.
        spatial_scale: factor from box coordinates to map coordinates (e.g. 1/16).

    Returns:
        ``(K, C, out_h, out_w)`` pooled features. An empty bin (a RoI outside the
        map) gives 0; a bin holding only NaN or values <= -FLT_MAX gives
        -FLT_MAX and no gradient, as torchvision's ``-FLT_MAX`` initial maximum
        does. The first maximum in row-major order wins ties and receives the
        gradient, which accumulates over overlapping RoIs.

    Raises:
        ValueError: input not 4-d, boxes not ``(K, 5)`` / list of ``(L, 4)``,
            non-positive ``output_size``.
        TypeError: non-floating input, boxes of another dtype, non-number scale.

    Example:
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> jaxops.roi_pool(x, jnp.array([[0.0, 0, 0, 3, 3]]), 2)
        Array([[[[ 5.,  7.],
                 [13., 15.]]]], dtype=float32)

    Note:
        A batch index outside ``[0, N)`` (after truncation) cannot raise under
        ``jit``: that RoI's output is NaN and it receives no gradient; under
        :func:`jaxops.checked` it raises. torchvision reads out of bounds there.
        ``boxes`` get a zero gradient, as torchvision gives them none.

        The gradient is a scatter-add of each bin's cotangent to its argmax, so
        overlapping RoIs whose bins share an argmax accumulate there (as
        torchvision's backward does, with ``atomicAdd`` on CUDA). On GPU, XLA
        emits that scatter with atomic adds: the order in which the
        contributions meeting at one pixel are summed is not fixed, and the
        float32 gradient may differ in its last bits from run to run. With
        ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (or
        ``--xla_gpu_exclude_nondeterministic_ops=true``) XLA:GPU rewrites a
        float scatter-add whose indices may repeat into a deterministic form
        (a sort and prefix sum, or failing that a loop over the updates), which
        makes the gradient reproducible run to run, and slower. On CPU the
        gradient is deterministic.
    """
    x, rois, size, scale = _prepare("roi_pool", input, boxes, output_size, spatial_scale)
    return _roi_pool(x, rois, _Pool(size, scale))


# ------------------------------------------------------------------ roi_align


def _sample_rows(y: jax.Array, rows: jax.Array, size: int):
    """torchvision's bilinear rule along one axis for sample positions ``y`` (any shape,
    trailing axis broadcast against ``rows``): per row the weight and whether the sample
    touches it (at all / with a zero factor / with a positive factor); and validity."""
    valid = ~((y < -1.0) | (y > size))
    yc = jnp.where(y <= 0, jnp.zeros((), y.dtype), y)
    low = jnp.floor(yc).astype(jnp.int32)
    at_end = low >= size - 1
    low = jnp.where(at_end, size - 1, low)
    high = jnp.where(at_end, size - 1, low + 1)
    yc = jnp.where(at_end, low.astype(y.dtype), yc)
    ly = yc - low.astype(y.dtype)
    hy = 1.0 - ly
    on_low = valid & (low == rows)
    on_high = valid & (high == rows)
    weight = jnp.where(on_low, hy, 0.0) + jnp.where(on_high, ly, 0.0)
    touched = on_low | on_high
    zero = (on_low & (hy == 0)) | (on_high & (ly == 0))
    positive = (on_low & (hy > 0)) | (on_high & (ly > 0))
    return weight, touched, zero, positive, valid


def _axis_weights(start, bin_size, grid, count: int, size: int, static_grid: int | None):
    """Per RoI and output bin along one axis: the interpolation row (summed over the
    bin's samples), the touched/zero-factor/positive-factor masks, and whether any
    of the bin's samples falls outside the map."""
    dt = start.dtype
    p = jnp.arange(count, dtype=dt)
    base = start[:, None] + p * bin_size[:, None]  # (K, out): roi_start + p * bin
    grid_f = grid.astype(dt)[:, None]

    def position(iy):  # iy (K, out, ...) float: torchvision's sample coordinate
        scaled = (iy + 0.5) * bin_size[:, None, None]
        div = grid_f[..., None] if static_grid is None else static_grid
        return base[..., None] + _exact_div(scaled, div)

    rows = jnp.arange(size, dtype=jnp.int32)
    if static_grid is not None:
        iy = jnp.broadcast_to(jnp.arange(static_grid, dtype=dt), base.shape + (static_grid,))
        y = position(iy)[..., None]  # (K, out, g, 1)
        wgt, t, z, pz, valid = _sample_rows(y, rows, size)
        has = jnp.ones(base.shape, bool)
        ends = position(jnp.stack([iy[..., 0], iy[..., -1]], -1))
    else:
        # Candidates near each row: samples are more than 0.5 apart (or alone in the bin).
        step = bin_size[:, None, None] / jnp.maximum(grid_f[..., None], 1)
        t = (rows.astype(dt) - 1 - base[..., None]) / step - 0.5
        t = jnp.clip(jnp.nan_to_num(t), -2.0, grid_f[..., None] + 2.0)
        lo = jnp.where(grid_f[..., None] > 1, jnp.floor(t) - 1, 0.0)  # (K, out, H)
        iy = lo[..., None] + jnp.arange(_CANDIDATES, dtype=dt)  # (K, out, H, J)
        y = position(iy.reshape(iy.shape[:2] + (size * _CANDIDATES,))).reshape(iy.shape)
        wgt, t_, z, pz, valid = _sample_rows(y, rows[:, None], size)
        real = (iy >= 0) & (iy < grid_f[..., None, None])
        wgt, t, z, pz = (jnp.where(real, a, 0) for a in (wgt, t_, z, pz))
        wgt, t, z, pz = (jnp.swapaxes(a, -1, -2) for a in (wgt, t, z, pz))  # (K, out, J, H)
        has = jnp.broadcast_to(grid_f > 0, base.shape)
        last = jnp.maximum(grid_f - 1, 0)
        ends = position(jnp.stack([jnp.zeros_like(base), jnp.broadcast_to(last, base.shape)], -1))
    weight = jnp.sum(wgt, axis=-2)
    touched, zero, positive = (jnp.any(a.astype(bool), axis=-2) for a in (t, z, pz))
    outside = has & jnp.any((ends < -1.0) | (ends > size), axis=-1)
    return weight, touched, zero, positive, outside, has


def _rows(x: jax.Array, b: jax.Array, my: jax.Array, precision=None, acc=None) -> jax.Array:
    """``t[k, i, c, w] = sum_h my[k, i, h] x[b_k, c, h, w]``: one ``(K * out_h, N * H) @
    (N * H, C * W)`` matmul."""
    n, c, h, w = x.shape
    k, oh, _ = my.shape
    onehot = (b[:, None] == jnp.arange(n)).astype(x.dtype)  # (K, N)
    rows = (my[:, :, None, :] * onehot[:, None, :, None]).reshape(k * oh, n * h)
    xt = jnp.transpose(x, (0, 2, 1, 3)).reshape(n * h, c * w)
    return jnp.matmul(rows, xt, precision=precision, preferred_element_type=acc).reshape(
        k, oh, c, w
    )


def _cols(t1: jax.Array, mx: jax.Array, precision=None, acc=None) -> jax.Array:
    """``out[k, c, i, j] = sum_w t1[k, i, c, w] mx[k, j, w]``."""
    # Contract W keeping t1's layout (writing (K, C, oh, ow) directly is ~5x slower on
    # CPU), then move the small result into place.
    t2 = jnp.einsum("kicw,kjw->kicj", t1, mx, precision=precision, preferred_element_type=acc)
    return jnp.transpose(t2, (0, 2, 1, 3))


def _apply(x: jax.Array, b: jax.Array, my: jax.Array, mx: jax.Array, precision=None) -> jax.Array:
    """``out[k, c, i, j] = sum_{h, w} my[k, i, h] x[b_k, c, h, w] mx[k, j, w]``."""
    return _cols(_rows(x, b, my, precision), mx, precision)


def _nonfinite_pattern(x, b, masks, hit, out):
    """``out`` with torchvision's NaN/inf pattern: a bin is NaN where a sample reads a
    NaN, or an inf with a zero factor (``0 * inf``), or, outside the map, a non-finite
    pixel ``(0, 0)`` (times 0); else +-inf where a sample reads +-inf with a positive
    factor (NaN if both). ``hit(ry, m, rx)``: per bin and channel, whether a pixel
    flagged in ``m`` lies on a row flagged in ``ry`` and a column flagged in ``rx``."""
    ty, zy, py, tx, zx, px, outside = masks
    isinf = jnp.isinf(x)
    corner = x[b, :, 0, 0][:, :, None, None]  # what out-of-map samples read, times 0
    out_of = outside[:, None]
    nan = hit(ty, jnp.isnan(x), tx) | (out_of & ~jnp.isfinite(corner))
    nan |= hit(zy, isinf, tx) | hit(ty, isinf, zx)
    pos, neg = hit(py, x == jnp.inf, px), hit(py, x == -jnp.inf, px)
    out = jnp.where(pos, jnp.inf, jnp.where(neg, -jnp.inf, out))
    return jnp.where(nan | (pos & neg), jnp.nan, out)


def _portable_hit(b, precision):
    """``hit`` for the portable formulation: the flags as 0/1 bfloat16 contractions (one
    bfloat16 pass: tensor cores on GPU, one MXU pass on TPU; bfloat16 intermediates,
    half the memory traffic of float32 ones), thresholded after each. Products are 0
    or 1, so a sum is positive exactly when one product is, whatever the precision
    setting, accumulation order or rounding of the sum."""
    bf16 = jnp.bfloat16

    def hit(ry, m, rx):
        t1 = _rows(m.astype(bf16), b, ry.astype(bf16), precision) > 0
        return _cols(t1.astype(bf16), rx.astype(bf16), precision) > 0

    return hit


def _align_chunk(form: str, precision, x, b, my, mx, count, masks):
    """The linear map with torchvision's NaN/inf pattern, for one chunk of RoIs."""
    finite = jnp.isfinite(x)
    if form == "cpu":
        out = _apply(jnp.where(finite, x, 0), b, my, mx) / count
        f = lambda a: a.astype(x.dtype)  # noqa: E731
        hit = lambda ry, m, rx: _apply(f(m), b, f(ry), f(rx)) > 0  # noqa: E731
        return _cpu.unless_finite(
            finite, out, functools.partial(_nonfinite_pattern, x, b, masks, hit)
        )
    out = _apply(jnp.where(finite, x, 0), b, my, mx, precision) / count
    return _nonfinite_pattern(x, b, masks, _portable_hit(b, precision), out)


def _over_chunks(fn, x: jax.Array, image, used, b: jax.Array, per_roi) -> jax.Array:
    """``fn(x, b, *per_roi)`` for each chunk of RoIs (the leading axis of ``b`` and of
    ``per_roi``), stacked. With ``image`` (one index per chunk; None: every chunk sees
    all of ``x``), ``fn`` sees only that image, and chunks not ``used`` (None: none)
    are skipped: they give zeros of ``fn``'s shape, ``(rois, C, out_h, out_w)``, read
    from ``b`` and ``per_roi = (my, mx, ...)`` (no second trace of ``fn``)."""

    def run(i, b, per_roi):
        return fn(x if i is None else lax.dynamic_slice_in_dim(x, i, 1), b, *per_roi)

    if b.shape[0] == 1:  # one chunk, no loop (it holds a RoI, so it is used)
        first = jax.tree.map(lambda a: a[0], (image, b, per_roi))
        return run(*first)[None]
    if used is None:
        return lax.map(lambda args: run(*args), (image, b, per_roi))

    def chunk(args):
        i, in_use, b, per_roi = args
        return lax.cond(in_use, run, lambda *_: jnp.zeros(shape, x.dtype), i, b, per_roi)

    my, mx = per_roi[:2]
    shape = (b.shape[1], x.shape[1], my.shape[2], mx.shape[2])
    return lax.map(chunk, (image, used, b, per_roi))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _align_linear(form: str, precision, x, image, used, b, my, mx, count, masks):
    """The linear map with torchvision's NaN/inf pattern in the primal, per chunk of RoIs
    (see :func:`_over_chunks`; per-RoI arguments and result are ``(chunks, rois, ...)``).
    ``form``: ``"cpu"`` (the pattern behind a ``cond`` on a finite image,
    ``Precision.DEFAULT``) or ``"portable"`` (the pattern always, at ``precision``)."""
    chunk = functools.partial(_align_chunk, form, precision)
    return _over_chunks(chunk, x, image, used, b, (my, mx, count, masks))


@_align_linear.defjvp
def _align_linear_jvp(form, precision, primals, tangents):
    x, image, used, b, my, mx, count, masks = primals
    prec = None if form == "cpu" else precision

    def chunk(dx, b, my, mx, count):
        return _apply(dx, b, my, mx, prec) / count

    # Every chunk, unused ones too (their rows are dropped): no cond in a linear map that
    # is transposed, since vmap turns a cond on a batched predicate into selects behind
    # stop_gradient, which has no transpose.
    tangent = _over_chunks(chunk, tangents[0], image, None, b, (my, mx, count))
    return _align_linear(form, precision, *primals), tangent


# The portable formulation's bound on the separable map's ``(RoIs, out_h, C, W)``
# intermediate: below it, one set of contractions over all RoIs (what GPUs and TPUs
# run best); above it, chunks of RoIs in a loop, so memory stays bounded for many
# RoIs on a large map (K=4096 on a 256-channel 200x200 map would need ~6 GiB each).
_ALIGN_CHUNK_BYTES = 256 << 20


def _rois_per_chunk(budget: int, x: jax.Array, out_h: int, k: Any) -> int | None:
    """How many RoIs keep one ``(RoIs, out_h, C, W)`` intermediate within ``budget``
    bytes; None for no chunks (no RoI, or a symbolic shape of ``jax.export``)."""
    if not all(isinstance(d, int) for d in (k, *x.shape)) or k == 0:
        return None
    _, c, _, w = x.shape
    return max(1, budget // max(1, out_h * c * w * x.dtype.itemsize))


def _split(size: int, k: int):
    """Chunks of at most ``size`` of ``k`` RoIs, in order: ``(arrange, restore)``, where
    ``arrange`` lays a per-RoI array out as ``(chunks, rois, ...)`` and ``restore`` undoes
    it on a result."""
    chunks = max(1, -(-k // size))
    size = -(-k // chunks)  # balanced: the last chunk is at most chunks - 1 short

    def arrange(a):  # the last RoI repeated into the padding: finite, dropped by restore
        a = jnp.pad(a, [(0, chunks * size - k)] + [(0, 0)] * (a.ndim - 1), mode="edge")
        return a.reshape((chunks, size) + a.shape[1:])

    def restore(out):
        return out.reshape((chunks * size,) + out.shape[2:])[:k]

    return arrange, restore


def _one_chunk(form: str, precision, x, b, *per_roi):
    chunked = jax.tree.map(lambda a: a[None], (b, *per_roi))
    return _align_linear(form, precision, x, None, None, *chunked)[0]


def _align_portable(budget: int, precision, x, b, my, mx, count, masks):
    size = _rois_per_chunk(budget, x, my.shape[1], b.shape[0])
    if size is None:
        return _one_chunk("portable", precision, x, b, my, mx, count, masks)
    arrange, restore = _split(size, b.shape[0])
    chunked = jax.tree.map(arrange, (b, my, mx, count, masks))
    return restore(_align_linear("portable", precision, x, None, None, *chunked))


def _align_cpu(budget: int, precision, x, b, my, mx, count, masks):
    size = _rois_per_chunk(budget, x, my.shape[1], b.shape[0])
    if size is None:
        return _one_chunk("cpu", precision, x, b, my, mx, count, masks)
    layout = _cpu.ImageChunks.of(b, x.shape[0], size)
    chunked = jax.tree.map(layout.arrange, (my, mx, count, masks))
    b0 = jnp.zeros(layout.used.shape + (layout.size,), jnp.int32)  # x is one image per chunk
    out = _align_linear("cpu", precision, x, layout.image, layout.used, b0, *chunked)
    return layout.restore(out)


@dataclasses.dataclass(frozen=True)
class _Align:
    """A validated roi_align: every field static and hashable."""

    output_size: tuple[int, int]
    spatial_scale: float
    sampling_ratio: int
    aligned: bool
    precision: Any


@functools.partial(jax.jit, static_argnames=("cfg",))
def _roi_align(x, rois, cfg: _Align):
    n, _, h, w = x.shape
    oh, ow = cfg.output_size
    dt = x.dtype
    rois = lax.stop_gradient(rois)  # torchvision gives boxes no gradient
    b, valid = _batch_rows(rois, n)
    offset = jnp.asarray(0.5 if cfg.aligned else 0.0, dt)
    c = rois[:, 1:] * jnp.asarray(cfg.spatial_scale, dt) - offset
    sw, sh, ew, eh = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    rw, rh = ew - sw, eh - sh
    if not cfg.aligned:
        rw, rh = jnp.maximum(rw, 1.0), jnp.maximum(rh, 1.0)
    bin_h, bin_w = _exact_div(rh, oh), _exact_div(rw, ow)
    static = cfg.sampling_ratio if cfg.sampling_ratio > 0 else None
    if static is None:
        gh, gw = jnp.ceil(bin_h).astype(jnp.int32), jnp.ceil(bin_w).astype(jnp.int32)
    else:
        gh = gw = jnp.full(rois.shape[:1], cfg.sampling_ratio, jnp.int32)
    count = jnp.maximum(gh * gw, 1).astype(dt)[:, None, None, None]
    my, ty, zy, py, out_y, has_y = _axis_weights(sh, bin_h, gh, oh, h, static)
    mx, tx, zx, px, out_x, has_x = _axis_weights(sw, bin_w, gw, ow, w, static)
    outside = (out_y[:, :, None] & has_x[:, None, :]) | (has_y[:, :, None] & out_x[:, None, :])
    masks = (ty, zy, py, tx, zx, px, outside)
    out = _platform.choose(
        x,
        b,
        my,
        mx,
        count,
        masks,
        cpu=functools.partial(_align_cpu, _cpu.ALIGN_CHUNK_BYTES, cfg.precision),
        portable=functools.partial(_align_portable, _ALIGN_CHUNK_BYTES, cfg.precision),
    )
    return jnp.where(valid[:, None, None, None], out, jnp.nan)


def roi_align(
    input: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    precision: Any = None,
) -> jax.Array:
    r"""RoIAlign (Mask R-CNN), like ``torchvision.ops.roi_align``.

    Each bin averages ``gh x gw`` bilinear samples placed at the centres of a
    regular grid (``sampling_ratio`` per axis, or ``ceil(bin size)`` when
    ``sampling_ratio <= 0``). Samples beyond ``[-1, H]`` x ``[-1, W]`` count as 0;
    others are clamped into the map. ``aligned=True`` shifts the box by half a
    pixel and lets zero/negative-size RoIs through (they output 0).

    .. math::
        \text{out}: (K, C, \text{out}_h, \text{out}_w), \qquad
        \text{out}[k, c, i, j] = \frac{1}{\max(g_h g_w, 1)} \sum_{s \in \text{bin}_{k,i,j}}
            \text{bilinear}(x[b_k, c], s)

    Args:
        input: feature map ``(N, C, H, W)``, floating dtype.
        boxes: ``(K, 5)`` rows ``(batch_index, x1, y1, x2, y2)``, or a list of
            ``(L_i, 4)`` arrays whose list position is the batch index; same
            dtype as ``input``. Boxes are not differentiated.
        output_size: ``out_h, out_w``, an int or a pair.
        spatial_scale: factor from box coordinates to map coordinates.
        sampling_ratio: samples per bin and axis; ``<= 0`` for adaptive.
        aligned: subtract 0.5 from the scaled box (pixel-centre alignment).
        precision: keyword-only; the contraction precision on GPU/TPU, as
            ``lax.dot_general`` takes it. ``None`` (the default) means
            ``lax.Precision.HIGHEST``: float32-exact products, as torchvision
            on CPU. Pass ``"default"`` for TF32 (GPU) or one bfloat16 pass
            (TPU). XLA:CPU computes float32 in float32 whatever the setting.

    Returns:
        ``(K, C, out_h, out_w)`` features; the gradient w.r.t. ``input`` is
        torchvision's (each sample's weights, divided by the count).

    Raises:
        ValueError: input not 4-d, boxes not ``(K, 5)`` / list of ``(L, 4)``,
            non-positive ``output_size``.
        TypeError: non-floating input, boxes of another dtype, non-int
            ``sampling_ratio``, non-number scale, an unknown ``precision``.

    Example:
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> jaxops.roi_align(x, jnp.array([[0.0, 0, 0, 2, 2]]), 1, sampling_ratio=2)
        Array([[[[5.]]]], dtype=float32)

    Note:
        NaN/inf in the map propagate exactly as in torchvision (including the
        ``0 * inf`` of zero-weight neighbours and of out-of-map samples, which
        read pixel ``(0, 0)``). A batch index outside ``[0, N)`` cannot raise
        under ``jit``: that RoI's output is NaN and it receives no gradient;
        under :func:`jaxops.checked` it raises. ``boxes`` get a zero gradient,
        as torchvision gives them none.

        The samples are contractions (``My @ X @ Mx^T`` per RoI, and their
        transposes in the gradient), computed at ``precision`` on GPU/TPU: a
        lower setting is faster and rounds the map and the bilinear weights
        (TF32 keeps about 3 significant digits, bfloat16 about 2). Which bins
        are NaN or +-inf does not depend on it.
    """
    op = "roi_align"
    x, rois, size, scale = _prepare(op, input, boxes, output_size, spatial_scale)
    ratio = _utils.as_int(op, "sampling_ratio", sampling_ratio)
    if not isinstance(aligned, (bool, np.bool_)):
        raise _utils.fail(op, f"aligned must be a bool, got {aligned!r}", TypeError)
    cfg = _Align(size, scale, ratio, bool(aligned), _utils.precision(op, precision))
    return _roi_align(x, rois, cfg)
