"""max_pool2d k3 s2 p1 on (32, 64, 112, 112) and avg_pool2d k3 s1 p1 (count_include_pad=False)
on (32, 256, 28, 28), forward and forward+backward; ``lax`` is the bare ``lax.reduce_window``
(its max gradient is XLA's ``select_and_scatter``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxops

from harness import Case, jax_fwd_bwd, jax_impl, to_torch, torch_fwd, torch_fwd_bwd


def _lax_max(x):
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, 1, 3, 3), (1, 1, 2, 2), ((0, 0), (0, 0), (1, 1), (1, 1))
    )


def _lax_sum(x):
    return lax.reduce_window(
        x, 0.0, lax.add, (1, 1, 3, 3), (1, 1, 1, 1), ((0, 0), (0, 0), (1, 1), (1, 1))
    )


def cases(quick: bool) -> list[Case]:
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    max_shape = (8, 64, 56, 56) if quick else (32, 64, 112, 112)
    avg_shape = (8, 256, 28, 28) if quick else (32, 256, 28, 28)
    xm = rng.standard_normal(max_shape, np.float32)
    xa = rng.standard_normal(avg_shape, np.float32)
    jm, tm, ja, ta = jnp.asarray(xm), to_torch(xm), jnp.asarray(xa), to_torch(xa)

    def mp(x):
        return jaxops.max_pool2d(x, 3, 2, 1)

    def mp_idx(x):
        return jaxops.max_pool2d(x, 3, 2, 1, return_indices=True)

    def t_mp(x):
        return F.max_pool2d(x, 3, 2, 1)

    def ap(x):
        return jaxops.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    def t_ap(x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    m, a = f"k3 s2 p1 {max_shape}", f"k3 s1 p1 no-pad-count {avg_shape}"
    return [
        Case(
            "max_pool2d",
            m,
            "fwd",
            lambda: {
                "jaxops": jax_impl(mp, jm),
                "torch": torch_fwd(t_mp, tm),
                "lax": jax_impl(_lax_max, jm),
            },
        ),
        Case(
            "max_pool2d",
            m + " +indices",
            "fwd",
            lambda: {
                "jaxops": jax_impl(mp_idx, jm),
                "torch": torch_fwd(lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True), tm),
            },
        ),
        Case(
            "max_pool2d",
            m,
            "fwd+bwd",
            lambda: {
                "jaxops": jax_fwd_bwd(mp, (jm,), (0,)),
                "torch": torch_fwd_bwd(t_mp, (tm,), (0,)),
                "lax": jax_fwd_bwd(_lax_max, (jm,), (0,)),
            },
        ),
        Case(
            "avg_pool2d",
            a,
            "fwd",
            lambda: {
                "jaxops": jax_impl(ap, ja),
                "torch": torch_fwd(t_ap, ta),
                "lax": jax_impl(_lax_sum, ja),
            },
        ),
        Case(
            "avg_pool2d",
            a,
            "fwd+bwd",
            lambda: {
                "jaxops": jax_fwd_bwd(ap, (ja,), (0,)),
                "torch": torch_fwd_bwd(t_ap, (ta,), (0,)),
                "lax": jax_fwd_bwd(_lax_sum, (ja,), (0,)),
            },
        ),
    ]
