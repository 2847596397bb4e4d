"""max_pool2d's derivative and indices as XLA:CPU runs them fastest (pooling's ``cpu`` branch).

The semantics are :mod:`jaxops.pooling`'s, read from its window configuration
(``cfg``): the window geometry, torch's first in-bounds element
(``cfg.first_in_bounds``) and its sequential rule (``cfg.replaces``: a value
replaces the running maximum if it is greater or NaN; the padding never wins).
What is chosen here, by timing XLA:CPU, is how it is computed:

- **The argmax is a flat index** ``h * W + w`` tracked through a scan over the
  window's strided views of the padded input: all ``kh * kw`` taps in one fused
  pass for windows up to 3x3, separably beyond (``kw`` steps along W on every
  padded row, then ``kh`` along H over the row results; this selects the same
  element).
- **The tangent is a gather** of the input tangent at that index, so reverse
  mode is JAX's transpose, a scatter-add: XLA:CPU runs it as one sequential
  loop over the windows, adding in row-major order exactly as torch's backward
  does, where the portable formulation's ``kh * kw`` strided pads would each
  be a pass over the whole input. XLA's own ``select_and_scatter`` is avoided:
  a scalar loop that cannot do window dilation and routes NaN windows
  elsewhere than torch.

On GPU a scatter-add is atomics (non-deterministic, and subject to XLA:GPU's
scatter slow paths) and on TPU it may compile into a serial loop, which is why
the other backends run the portable formulation in :mod:`jaxops.pooling`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

if TYPE_CHECKING:
    from jaxops.pooling import _Pool


def _argmax_scan(x: jax.Array, cfg: _Pool) -> tuple[jax.Array, jax.Array]:
    """Window maxima and torch's flat argmax ``h * W + w`` per window.

    Each step keeps the running value unless the candidate replaces it
    (``cfg.replaces``), which is torch's sequential rule in row-major window
    order (the first maximum wins ties, the last NaN wins, padding never wins;
    the start is the first in-bounds element). Small windows visit their
    kh * kw strided views in one fused loop; larger ones go separably (kw + kh
    steps): along W on every padded row, then along H over the row results,
    which selects the same element.
    """
    kh, kw = cfg.kernel
    if kh * kw <= kh + kw + 4:  # up to 3x3: one fused pass measured faster
        return _argmax_window(x, cfg)
    return _argmax_separable(x, cfg)


def _argmax_window(x: jax.Array, cfg: _Pool) -> tuple[jax.Array, jax.Array]:
    (kh, kw), (sh, sw), (dh, dw) = cfg.kernel, cfg.stride, cfg.dilation
    (oh, ow), (_, w_in), (ph, pw) = cfg.out_hw, cfg.in_hw, cfg.padding
    n, c = x.shape[:2]
    low = jnp.array(cfg.lowest(x.dtype), x.dtype)
    xp = cfg.padded(x, low)
    row0, col0 = cfg.first_in_bounds(0), cfg.first_in_bounds(1)
    best = jnp.full((n, c, oh, ow), low)
    start = jnp.asarray(row0[:, None] * w_in + col0[None, :], jnp.int32)
    flat = jnp.broadcast_to(start, (n, c, oh, ow))
    base = (np.arange(oh) * sh - ph)[:, None] * w_in + (np.arange(ow) * sw - pw)[None, :]
    for i in range(kh):
        for j in range(kw):
            lo = (0, 0, i * dh, j * dw)
            hi = (n, c, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1)
            v = lax.slice(xp, lo, hi, (1, 1, sh, sw))
            take = cfg.replaces(v, best)
            best = jnp.where(take, v, best)
            flat = jnp.where(take, jnp.asarray(base + i * dh * w_in + j * dw, jnp.int32), flat)
    return best, flat


def _argmax_separable(x: jax.Array, cfg: _Pool) -> tuple[jax.Array, jax.Array]:
    (kh, kw), (sh, sw), (dh, dw) = cfg.kernel, cfg.stride, cfg.dilation
    (oh, ow), (_, w_in) = cfg.out_hw, cfg.in_hw
    n, c = x.shape[:2]
    low = jnp.array(cfg.lowest(x.dtype), x.dtype)
    xp = cfg.padded(x, low)
    hp = xp.shape[2]
    idx_t = jnp.int32
    wins = cfg.replaces

    # Along W: per padded row, the best column of each window (an input column index).
    col0 = cfg.first_in_bounds(1)
    row_best = jnp.full((n, c, hp, ow), low)
    row_col = jnp.broadcast_to(jnp.asarray(col0, idx_t), (n, c, hp, ow))
    ow_start = np.arange(ow) * sw - cfg.padding[1]
    for j in range(kw):
        v = lax.slice(xp, (0, 0, 0, j * dw), (n, c, hp, j * dw + (ow - 1) * sw + 1), (1, 1, 1, sw))
        take = wins(v, row_best)
        row_best = jnp.where(take, v, row_best)
        row_col = jnp.where(take, jnp.asarray(ow_start + j * dw, idx_t), row_col)

    # Along H: the best row of each window; the flat index combines row and column.
    row0 = cfg.first_in_bounds(0)
    best = jnp.full((n, c, oh, ow), low)
    start = jnp.asarray(row0[:, None] * w_in + col0[None, :], idx_t)
    flat = jnp.broadcast_to(start, (n, c, oh, ow))
    oh_start = np.arange(oh) * sh - cfg.padding[0]
    for i in range(kh):
        lo, hi = (0, 0, i * dh, 0), (n, c, i * dh + (oh - 1) * sh + 1, ow)
        v = lax.slice(row_best, lo, hi, (1, 1, sh, 1))
        col = lax.slice(row_col, lo, hi, (1, 1, sh, 1))
        take = wins(v, best)
        best = jnp.where(take, v, best)
        flat = jnp.where(take, jnp.asarray((oh_start + i * dh)[:, None] * w_in, idx_t) + col, flat)
    return best, flat


def _gather_planes(t: jax.Array, flat: jax.Array) -> jax.Array:
    """``t[n, c].ravel()[flat[n, c]]`` per plane; out-of-range indices read 0."""
    n, c, h, w = t.shape
    planes = t.reshape(n * c, h * w)
    got = jnp.take_along_axis(
        planes,
        flat.reshape(n * c, flat.shape[2] * flat.shape[3]),
        axis=1,
        mode="fill",
        fill_value=0,
    )
    return got.reshape(flat.shape)


def _gather_index(cfg: _Pool, flat: jax.Array) -> jax.Array:
    """``flat`` with the windows that hold no input element sent out of range (they read 0).

    torch's index for such a (dilated, all-padding) window is its start, which can
    be past the end of a row and so alias a real element: ``h * W + W`` is
    ``(h + 1, 0)``. Which windows these are is static; for the usual
    configurations there are none and ``flat`` is used as it is.
    """
    empty = ~(cfg.holds_element(0)[:, None] & cfg.holds_element(1)[None, :])
    if not empty.any():
        return flat
    return jnp.where(empty, cfg.in_hw[0] * cfg.in_hw[1], flat)


# ------------------------------------------------------------ the cpu branches of jaxops.pooling


def argmax(cfg: _Pool, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Window maxima and torch's flat indices (``max_pool2d(..., return_indices=True)``)."""
    return _argmax_scan(x, cfg)


def max_jvp(cfg: _Pool, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Window maxima and the tangent ``t`` read at torch's argmax."""
    best, flat = _argmax_scan(x, cfg)
    return best, _gather_planes(t, _gather_index(cfg, flat))


def argmax_jvp(cfg: _Pool, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Window maxima, torch's flat indices and the tangent ``t`` read at them."""
    best, flat = _argmax_scan(x, cfg)
    return best, flat, _gather_planes(t, _gather_index(cfg, flat))
