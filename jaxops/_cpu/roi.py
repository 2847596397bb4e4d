"""roi_pool and roi_align as XLA:CPU runs them fastest (the ``cpu`` branch of :mod:`jaxops.roi`).

:mod:`jaxops.roi` states the semantics (bin edges, the sparse-table step with
its first-maximum tie rule, the four-entry lookup, the NaN/inf pattern) and
hands them in as functions; this module only decides how XLA:CPU schedules
them. These choices were made by timing XLA:CPU and are what XLA:GPU and
XLA:TPU run badly (a ``while`` loop, a branch on the data); they never see them:

- **roi_pool: a scanned sparse table, only as deep as the longest bin needs.**
  The table's doubling steps run as two nested ``lax.scan``s (one loop body
  per axis, so the program and its compile time stay small), and a
  ``lax.switch`` on the longest bin picks the shallowest of three depths:
  bins up to 7 long (small RoIs), bins of RoIs inside the map (at most
  ``ceil(H / out_h) + 1`` long), any bin. On CPU the branch index is just a
  value in memory, and a shallow table is a fraction of the full one's work
  (on a 50x50 map, 9 or 16 levels instead of 36).
- **roi_align: a loop over cache-sized chunks of RoIs of one image each**
  (:class:`ImageChunks`): a RoI meets only its own image, and no intermediate
  the size of all RoIs is written out on every call.
- **roi_align: the NaN/inf pattern only when the image is not finite.** The
  pattern costs five more contractions the size of the op itself; a
  ``lax.cond`` on ``all(isfinite(x))`` skips them for the usual finite map.
  The contractions keep ``Precision.DEFAULT``: XLA:CPU computes float32
  contractions in float32 whatever the precision setting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

# ---------------------------------------------------------------- roi_pool


def _shifted(a: jax.Array, s: jax.Array, axis: int, fill: Any) -> jax.Array:
    """``a`` moved ``s`` (traced, ``0 <= s <= n``) places towards index 0 along ``axis``,
    ``fill`` entering at the end."""
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, n)
    return lax.dynamic_slice_in_dim(jnp.pad(a, pad, constant_values=fill), s, n, axis=axis)


def _levels(n: int) -> int:
    return max(n, 1).bit_length()  # floor(log2(n)) + 1


def sparse_table(v: Any, levels_h: int, levels_w: int, step: Callable[..., Any]) -> Any:
    """The sparse table of ``v`` (an ``(N, H, W, C)`` array, or a pair of values and
    positions) to depth ``(levels_h, levels_w)``, stacked ``(levels_h, levels_w, N, H, W, C)``.

    ``step(v, shift, axis)`` is one doubling step along ``axis``, given
    ``shift(a, fill)``. Two nested ``scan``s over the steps (level 0 "doubles" by
    a shift of 0, a no-op), so the program stays small.
    """

    def double(vi, level, axis):
        s = (1 << level) >> 1
        return step(vi, lambda a, fill: _shifted(a, s, axis, fill), axis)

    def row_level(carry, a):
        carry = double(carry, a, 1)

        def col_level(cc, b):
            cc = double(cc, b, 2)
            return cc, cc

        return carry, lax.scan(col_level, carry, jnp.arange(levels_w))[1]

    return lax.scan(row_level, v, jnp.arange(levels_h))[1]


def bin_maxima(
    lookup: Callable[[int, int], Any],
    ah: jax.Array,
    aw: jax.Array,
    map_hw: tuple[int, int],
    out_hw: tuple[int, int],
) -> Any:
    """``lookup(levels_h, levels_w)`` (a table that deep, then the bins' four lookups) at
    the shallowest of three depths that serves every bin, chosen by ``lax.switch``.

    ``ah``, ``aw``: per bin the table level its lookup reads (``floor(log2(length))``).
    """
    (h, w), (oh, ow) = map_hw, out_hw
    # Tiers of table depth: bins up to 7 long (small RoIs), bins of RoIs inside the map
    # (at most ceil(H / out_h) + 1 long), any bin. The shallowest that serves every bin runs.
    full = (_levels(h), _levels(w))
    inside = (min(full[0], _levels(-(-h // oh) + 1)), min(full[1], _levels(-(-w // ow) + 1)))
    small = (min(3, inside[0]), min(3, inside[1]))
    tiers = list(dict.fromkeys([small, inside, full]))  # elementwise increasing
    if len(tiers) == 1 or ah.shape[0] == 0:
        return lookup(*full)
    need_h, need_w = jnp.max(ah) + 1, jnp.max(aw) + 1
    tier = sum(((need_h > th) | (need_w > tw)).astype(jnp.int32) for th, tw in tiers[:-1])
    return lax.switch(tier, [functools.partial(lookup, th, tw) for th, tw in tiers])


# ---------------------------------------------------------------- roi_align


def unless_finite(
    finite: jax.Array, out: jax.Array, pattern: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """``pattern(out)`` (torchvision's NaN/inf pattern put into ``out``), skipped when
    the map is finite everywhere (``finite``: ``isfinite(x)``), where it leaves ``out``
    as it is."""
    return lax.cond(jnp.all(finite), lambda o: o, pattern, out)


# Each chunk's (RoIs, out_h, C, W) intermediate: about the size of a CPU's last-level
# cache. One intermediate for all 512 RoIs of the benchmark (175 MiB, written out on
# every call) ran the forward ~2x slower than chunks of 8-32 MiB.
ALIGN_CHUNK_BYTES = 16 << 20


class ImageChunks(NamedTuple):
    """RoIs laid out in chunks of at most ``size``, each chunk from one image.

    Two costs of one contraction over all RoIs go: its intermediate (a ``C * W``
    row per RoI and output row) stays cache-sized, and a RoI meets only its own
    image, where a one-hot contraction over ``(N, H)`` multiplies it by every image
    (``N`` times the work). The RoIs of image ``i`` fill chunks of their own, in
    order; a chunk's empty slots repeat RoI 0 (finite values, dropped by
    :meth:`restore`, so given a zero cotangent). At most ``ceil(K / size) + min(N, K) - 1``
    chunks; the unused ones are marked.
    """

    size: int
    slot: jax.Array  # (K,): each RoI's place in the flattened layout
    roi_at: jax.Array  # (chunks * size,): the RoI in each place
    image: jax.Array  # (chunks,): the image a chunk reads
    used: jax.Array  # (chunks,): whether it holds a RoI

    @classmethod
    def of(cls, b: jax.Array, n: int, size: int) -> ImageChunks:
        k = b.shape[0]
        size = min(size, k)
        mine = b[:, None] == jnp.arange(n)  # (K, N)
        rank = jnp.take_along_axis(jnp.cumsum(mine, 0), b[:, None], 1)[:, 0] - 1
        per_image = -(-jnp.sum(mine, 0) // size)  # chunks per image
        first = jnp.cumsum(per_image) - per_image
        slot = first[b] * size + rank
        chunks = -(-k // size) + min(n, k) - 1
        places = chunks * size
        roi_at = jnp.zeros(places, jnp.int32).at[slot].set(jnp.arange(k), unique_indices=True)
        used = jnp.zeros(places, bool).at[slot].set(True, unique_indices=True)[::size]
        return cls(size, slot, roi_at, b[roi_at[::size]], used)

    def arrange(self, a: jax.Array) -> jax.Array:
        """A per-RoI array laid out as ``(chunks, size, ...)``."""
        return jnp.take(a, self.roi_at, axis=0).reshape(
            self.used.shape + (self.size,) + a.shape[1:]
        )

    def restore(self, out: jax.Array) -> jax.Array:
        """A ``(chunks, size, ...)`` result back in RoI order."""
        flat = out.reshape((-1,) + out.shape[2:])
        return jnp.take(flat, self.slot, axis=0, unique_indices=True)
