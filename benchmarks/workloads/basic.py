"""sigmoid and flatten + mse_loss on (32, 64, 56, 56)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxops

from harness import Case, jax_fwd_bwd, jax_impl, to_torch, torch_fwd, torch_fwd_bwd


def _inputs(quick: bool):
    shape = (8, 64, 28, 28) if quick else (32, 64, 56, 56)
    rng = np.random.default_rng(0)
    return shape, rng.standard_normal(shape, np.float32), rng.standard_normal(shape, np.float32)


def cases(quick: bool) -> list[Case]:
    import torch
    import torch.nn.functional as F

    shape, x, y = _inputs(quick)
    tx, ty = to_torch(x), to_torch(y)
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def flat_mse(a, b):
        return jaxops.mse_loss(jaxops.flatten(a, 1), jaxops.flatten(b, 1))

    def t_flat_mse(a, b):
        return F.mse_loss(torch.flatten(a, 1), torch.flatten(b, 1))

    return [
        Case(
            "sigmoid",
            str(shape),
            "fwd",
            lambda: {
                "jaxops": jax_impl(jaxops.sigmoid, jx),
                "torch": torch_fwd(torch.sigmoid, tx),
                "lax": jax_impl(jax.lax.logistic, jx),
            },
        ),
        Case(
            "sigmoid",
            str(shape),
            "fwd+bwd",
            lambda: {
                "jaxops": jax_fwd_bwd(jaxops.sigmoid, (jx,), (0,)),
                "torch": torch_fwd_bwd(torch.sigmoid, (tx,), (0,)),
            },
        ),
        Case(
            "mse_loss",
            f"flatten+mse {shape}",
            "fwd",
            lambda: {
                "jaxops": jax_impl(flat_mse, jx, jy),
                "torch": torch_fwd(t_flat_mse, tx, ty),
            },
        ),
        Case(
            "mse_loss",
            f"flatten+mse {shape}",
            "fwd+bwd",
            lambda: {
                "jaxops": jax_fwd_bwd(flat_mse, (jx, jy), (0, 1)),
                "torch": torch_fwd_bwd(t_flat_mse, (tx, ty), (0, 1)),
            },
        ),
    ]
