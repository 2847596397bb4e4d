"""batch_norm training on (32, 64, 56, 56); cross_entropy on ImageNet-sized logits and
segmentation maps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxops

from harness import (
    Case,
    fwd_and_bwd_cases,
    jax_fwd_bwd,
    jax_impl,
    to_torch,
    torch_fwd,
    torch_fwd_bwd,
)


def _naive_batch_norm(x, w, b):
    """The textbook jnp formulation (one-pass moments via jnp.var), for reference."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.var(x, axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * w.reshape(shape) + b.reshape(shape)


def _naive_cross_entropy(x, t, ignore_index=-100, label_smoothing=0.0):
    """log_softmax + take_along_axis, as one writes it by hand (no weight)."""
    logp = jax.nn.log_softmax(x, axis=1)
    valid = t != ignore_index
    nll = -jnp.take_along_axis(logp, jnp.expand_dims(jnp.where(valid, t, 0), 1), axis=1)[:, 0]
    loss = (1 - label_smoothing) * nll - label_smoothing / x.shape[1] * jnp.sum(logp, axis=1)
    return jnp.sum(jnp.where(valid, loss, 0)) / jnp.sum(valid)


def _ce_cases(workload, logits, labels, **kwargs):
    """Forward and forward+backward (w.r.t. the logits) cases of cross_entropy(**kwargs)."""
    import torch.nn.functional as F

    jax_args = (jnp.asarray(logits), jnp.asarray(labels))
    torch_args = (to_torch(logits), to_torch(labels))

    # Labels are arguments, not closed-over constants, so XLA cannot fold them into the program.
    def ours(a, t):
        return jaxops.cross_entropy(a, t, **kwargs)

    def theirs(a, t):
        return F.cross_entropy(a, t, **kwargs)

    def naive(a, t):
        return _naive_cross_entropy(a, t, **kwargs)

    return fwd_and_bwd_cases(
        "cross_entropy", workload, ours, theirs, naive, jax_args, torch_args, (0,)
    )


def cases(quick: bool) -> list[Case]:
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    out: list[Case] = []

    # ------------------------------------------------------------ batch_norm
    shape = (8, 64, 28, 28) if quick else (32, 64, 56, 56)
    c = shape[1]
    x = rng.standard_normal(shape, np.float32)
    w, b = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    jx, jw, jb, jrm, jrv = map(jnp.asarray, (x, w, b, rm, rv))
    tx, tw, tb, trm, trv = map(to_torch, (x, w, b, rm, rv))

    def bn(a, ww, bb):
        return jaxops.batch_norm(a, jrm, jrv, ww, bb, training=True)

    def bn_out(a, ww, bb):
        return bn(a, ww, bb).output

    def t_bn(a, ww, bb):
        return F.batch_norm(a, trm, trv, ww, bb, training=True)

    out += [
        Case(
            "batch_norm",
            f"train {shape}",
            "fwd",
            lambda: {
                "jaxops": jax_impl(bn, jx, jw, jb),
                "torch": torch_fwd(t_bn, tx, tw, tb),
                "lax": jax_impl(_naive_batch_norm, jx, jw, jb),
            },
        ),
        Case(
            "batch_norm",
            f"train {shape}",
            "fwd+bwd",
            lambda: {
                "jaxops": jax_fwd_bwd(bn_out, (jx, jw, jb), (0, 1, 2)),
                "torch": torch_fwd_bwd(t_bn, (tx, tw, tb), (0, 1, 2)),
                "lax": jax_fwd_bwd(_naive_batch_norm, (jx, jw, jb), (0, 1, 2)),
            },
        ),
    ]

    # ------------------------------------------------------------ cross_entropy
    n, k = (1024, 1000) if quick else (4096, 1000)
    logits = (3 * rng.standard_normal((n, k))).astype(np.float32)
    labels = rng.integers(0, k, n)
    out += _ce_cases(f"({n}, {k}) label_smoothing=0.1", logits, labels, label_smoothing=0.1)

    seg = (2, 21, 64, 64) if quick else (8, 21, 128, 128)
    s_logits = rng.standard_normal(seg, np.float32)
    s_labels = rng.integers(0, seg[1], (seg[0],) + seg[2:])
    s_labels[rng.uniform(size=s_labels.shape) < 0.1] = 255  # 10% "void" pixels
    out += _ce_cases(f"segmentation {seg} ignore_index=255", s_logits, s_labels, ignore_index=255)
    return out
