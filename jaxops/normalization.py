"""Normalization: :func:`batch_norm`."""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxops import _utils


class BatchNormOutput(NamedTuple):
    """The result of :func:`batch_norm`: the normalised input and the updated running statistics.

    ``running_mean``/``running_var`` are the blended statistics in training mode,
    the given ones unchanged in evaluation mode, and ``None`` where ``None`` was given.
    """

    output: jax.Array
    running_mean: jax.Array | None
    running_var: jax.Array | None


def _channels(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A per-channel vector ``(C,)`` shaped to broadcast against ``(N, C, S)``."""
    return x.reshape(1, shape[1], 1)


def _blend(old: jax.Array | None, new: jax.Array, momentum: jax.Array) -> jax.Array | None:
    if old is None:
        return None
    return ((1 - momentum) * old.astype(new.dtype) + momentum * new).astype(old.dtype)


_Moments = tuple[jax.Array, jax.Array, jax.Array]  # centered, mean, m2


def _count(shape3: tuple[int, ...], axis_name: Any) -> int:
    """How many values each channel's statistics cover, over every device of ``axis_name``."""
    n, _, spatial = shape3
    return n * spatial * (1 if axis_name is None else lax.axis_size(axis_name))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _moments(x3: jax.Array, axis_name: Any) -> _Moments:
    """Per-channel ``(x - mean, mean, sum((x - mean)**2))`` of ``(N, C, S)`` data, reduced over
    ``N``, ``S`` and ``axis_name``.

    Shifted sums: each (sample, channel) row is summed relative to its first value q, and the
    rows are combined relative to the channel's pivot p, so every term is a small difference:
    a constant channel is exact, and a large common offset costs no precision. (Per-row pivots
    measured faster than one pivot per channel on XLA:CPU.) The result does not depend on the
    shifts; the JVP rule below differentiates the plain formulas, not the shifts.
    """
    spatial = x3.shape[2]
    q = x3[:, :, 0]  # (N, C)
    q = jnp.where(jnp.isfinite(q), q, 0)  # an inf/NaN shift must not turn an inf mean into NaN
    pivot = q[0]
    if axis_name is not None:
        pivot = lax.pmax(pivot, axis_name)  # one pivot on every shard; exact selection
    s1 = jnp.sum(spatial * (q - pivot) + jnp.sum(x3 - q[:, :, None], axis=2), axis=0)
    if axis_name is not None:
        s1 = lax.psum(s1, axis_name)
    shift_mean = s1 / _count(x3.shape, axis_name)  # mean - pivot
    # Second pass: squared deviations from the mean, x - mean = (x - q) - (mean - q).
    centered = (x3 - q[:, :, None]) - ((pivot - q) + shift_mean)[:, :, None]
    m2 = jnp.sum(jnp.square(centered), axis=(0, 2))
    if axis_name is not None:
        m2 = lax.psum(m2, axis_name)
    return centered, pivot + shift_mean, m2


@_moments.defjvp
def _moments_jvp(
    axis_name: Any, primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[_Moments, _Moments]:
    # d(mean) = mean(dx), d(x - mean) = dx - d(mean), d(m2) = 2 * sum((x - mean) * dx)
    # (the term in sum(x - mean) = 0 dropped). Its transpose is the closed-form backward,
    # one fused pass for the two reductions, instead of the transpose of the shifted sums.
    (x3,), (dx,) = primals, tangents
    centered, mean, m2 = _moments(x3, axis_name)
    sum_dx = jnp.sum(dx, axis=(0, 2))
    dm2 = 2 * jnp.sum(centered * dx, axis=(0, 2))
    if axis_name is not None:
        sum_dx, dm2 = lax.psum((sum_dx, dm2), axis_name)
    dmean = sum_dx / _count(x3.shape, axis_name)
    return (centered, mean, m2), (dx - dmean[None, :, None], dmean, dm2)


@functools.partial(jax.jit, static_argnames=("training", "axis_name"))
def _batch_norm(
    x: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None,
    bias: jax.Array | None,
    momentum: jax.Array,
    eps: jax.Array,
    training: bool,
    axis_name: Any,
) -> BatchNormOutput:
    n, c = x.shape[:2]
    spatial = math.prod(x.shape[2:])
    # Statistics and the affine transform run in at least float32 (half inputs too).
    ct = jnp.promote_types(x.dtype, jnp.float32)
    x3 = x.reshape(n, c, spatial).astype(ct)
    shape3 = x3.shape
    w = None if weight is None else _channels(weight.astype(ct), shape3)
    b = None if bias is None else _channels(bias.astype(ct), shape3)

    if training:
        if n * spatial == 0:  # torch: empty output, running statistics untouched
            return BatchNormOutput(x, running_mean, running_var)
        count = _count(shape3, axis_name)
        centered, mean, m2 = _moments(x3, axis_name)
        scale = lax.rsqrt(m2 / count + eps)  # normalise with the biased variance
        running_mean = _blend(running_mean, mean, momentum)
        running_var = _blend(running_var, m2 / (count - 1), momentum)  # unbiased, as torch
    else:
        # _check_mode requires both running statistics in evaluation mode
        assert running_mean is not None and running_var is not None
        centered = x3 - _channels(running_mean.astype(ct), shape3)
        scale = lax.rsqrt(running_var.astype(ct) + eps)

    scale = _channels(scale, shape3)
    if w is not None:
        scale = scale * w
    out = centered * scale
    if b is not None:
        out = out + b
    return BatchNormOutput(out.astype(x.dtype).reshape(x.shape), running_mean, running_var)


def _real_scalar(op: str, name: str, value: Any, hint: str = "") -> Any:
    """A Python real or a 0-d real array (a tracer too); rejects None, bools and others."""
    if isinstance(value, (bool, jnp.bool_)) or value is None or isinstance(value, str):
        raise _utils.fail(op, f"{name} must be a float, got {value!r}{hint}", TypeError)
    if isinstance(value, numbers.Real):
        return float(value)
    if (
        hasattr(value, "dtype")
        and jnp.ndim(value) == 0
        and (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer))
    ):
        return value
    raise _utils.fail(op, f"{name} must be a float, got {value!r}", TypeError)


def _axis_size(op: str, axis_name: Any) -> int:
    try:
        return lax.axis_size(axis_name)
    except NameError:
        raise _utils.fail(
            op,
            f"axis_name (={axis_name!r}) is not bound: call batch_norm inside shard_map, "
            "pmap or a vmap that names this axis",
        ) from None


def _concrete(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def _channel_vector(
    op: str, name: str, value: Any, c: int, shape: tuple[int, ...], strict: bool
) -> jax.Array | None:
    if value is None:
        return None
    _utils.check_array(op, name, value)
    v = jnp.asarray(value)
    if (v.ndim != 1 and strict) or v.size != c:
        raise _utils.fail(
            op,
            f"{name} should contain {c} elements (one per channel of input of shape {shape}), "
            f"got shape {v.shape}",
        )
    if not jnp.issubdtype(v.dtype, jnp.floating):
        raise _utils.fail(op, f"{name} must have a floating dtype, got {v.dtype}", TypeError)
    return v.reshape(c)


def _optional_array(op: str, name: str, value: Any) -> jax.Array | None:
    if value is None:
        return None
    _utils.check_array(op, name, value)
    return jnp.asarray(value)


def _check_mode(
    x: jax.Array,
    rm: jax.Array | None,
    rv: jax.Array | None,
    eps: Any,
    training: bool,
    axis_name: Any,
) -> None:
    """torch's rules for one mode: statistics needed in evaluation, more than one value per channel
    (over every device of ``axis_name``) in training, and the sign of a concrete ``eps``."""
    op = "batch_norm"
    eps_value = _concrete(eps)
    if training:
        if (rm is None) != (rv is None):
            raise _utils.fail(
                op, "running_mean and running_var must either both be None or neither be None"
            )
        axis_size = 1 if axis_name is None else _axis_size(op, axis_name)
        if x.shape[0] * math.prod(x.shape[2:]) * axis_size == 1:
            raise _utils.fail(
                op,
                f"expected more than 1 value per channel when training, got input shape {x.shape}",
            )
        if eps_value is not None and not eps_value > 0:
            raise _utils.fail(op, f"eps (={eps_value}) must be positive during training")
        return
    if rm is None:
        raise _utils.fail(op, "running_mean must be given in evaluation mode (training=False)")
    if rv is None:
        raise _utils.fail(op, "running_var must be given in evaluation mode (training=False)")
    if eps_value is not None and not eps_value >= 0:
        raise _utils.fail(op, f"eps (={eps_value}) must be non-negative")


def batch_norm(
    input: ArrayLike,
    running_mean: ArrayLike | None,
    running_var: ArrayLike | None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    axis_name: Any = None,
) -> BatchNormOutput:
    r"""Batch normalization over the channel dimension, like ``torch.nn.functional.batch_norm``.

    .. math::
        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \gamma + \beta,
        \qquad \text{out.shape} = \text{input.shape} = (N, C, *)

    In training mode ``E`` and ``Var`` are the mean and the **biased** variance of
    each channel over the batch and all spatial positions (``n = N * prod(*)``
    values); the running statistics become
    ``(1 - momentum) * running + momentum * batch_stat``, with the **unbiased**
    variance ``Var * n / (n - 1)``. In evaluation mode the running statistics are
    used and returned unchanged.

    The statistics are computed in at least float32 (half-precision inputs too)
    by two passes over the data (sums of differences from one sample of each
    row, then squared deviations from the mean): a
    constant channel gives exactly ``bias``, and a large common offset (say
    ``1e4``) costs no precision.

    Args:
        input: ``(N, C)`` or ``(N, C, *)`` array of rank 2 or more, floating.
        running_mean: ``(C,)`` running mean, or ``None`` (training mode only).
        running_var: ``(C,)`` running variance, or ``None`` (training mode only);
            ``None`` exactly when ``running_mean`` is.
        weight: optional ``(C,)`` scale ``gamma`` (default 1).
        bias: optional ``(C,)`` shift ``beta`` (default 0).
        training: normalise with batch statistics and update the running ones.
        momentum: weight of the batch statistics in the running-statistics
            update. May be a traced scalar.
        eps: added to the variance; positive in training, non-negative in evaluation.
        axis_name: jaxops extension. Inside ``shard_map``/``pmap`` (or a ``vmap``
            with an ``axis_name``), the name of the data-parallel mesh axis: the
            training statistics are then reduced over it (a ``psum`` of the
            shifted sums, then of the squared deviations from the global mean),
            so every shard normalises with the statistics of the global batch
            and returns the same running statistics, exactly as a single torch
            process on the whole batch. Not needed under plain ``jax.jit`` with a
            batch-sharded input: there the reduction is already global (XLA
            inserts the all-reduces).

    Returns:
        ``BatchNormOutput(output, running_mean, running_var)``: ``output`` in the
        input's dtype, the statistics in their own dtypes (``None`` when given
        ``None``).

    Raises:
        ValueError: input rank below 2 (except an empty ``(0,)`` input, returned
            as it is with the statistics, as torch does); training with one value per channel;
            ``eps`` not positive in training (negative in evaluation); missing
            running statistics in evaluation, or only one of them given; a
            statistic, weight or bias whose length is not ``C``.
        TypeError: non-floating input or parameters, ``momentum=None``,
            non-scalar ``momentum``/``eps``.

    Example:
        >>> x = jnp.arange(12.0).reshape(2, 3, 2)
        >>> out, rm, rv = jaxops.batch_norm(x, jnp.zeros(3), jnp.ones(3), training=True)
        >>> rm
        Array([0.35, 0.55, 0.75], dtype=float32)

    Note:
        Pure: the updated statistics are returned, not written in place.
        ``momentum=None`` (the cumulative average of ``torch.nn.BatchNorm*``) is
        rejected as by ``F.batch_norm``; pass ``1 / num_batches_tracked``.
        Gradients: torch differentiates only ``output`` w.r.t. input, weight and
        bias; here every output is differentiable (e.g. ``output`` w.r.t. the
        running statistics in evaluation mode, which torch refuses). Mixed
        parameter dtypes follow JAX promotion instead of torch's error. With
        a large common offset this is more accurate than torch's CPU kernel,
        which forms ``x * alpha + beta`` and loses about ``ulp(offset)``.
    """
    op = "batch_norm"
    _utils.check_array(op, "input", input)
    x = jnp.asarray(input)
    if x.ndim < 2 and not (x.ndim == 1 and x.size == 0):
        raise _utils.fail(
            op, f"input must have 2 or more dimensions (N, C, *), got shape {x.shape}"
        )
    _utils.check_floating(op, "input", x)
    if x.ndim == 1:  # torch returns an empty (0,) input as it is, whatever the statistics
        return BatchNormOutput(
            x,
            *(
                _optional_array(op, n, v)
                for n, v in (("running_mean", running_mean), ("running_var", running_var))
            ),
        )
    if not isinstance(training, (bool, jnp.bool_)):
        raise _utils.fail(op, f"training must be a bool, got {training!r}", TypeError)
    training = bool(training)
    momentum = _real_scalar(
        op,
        "momentum",
        momentum,
        " (torch's BatchNorm modules use momentum=None for a cumulative average; "
        "pass momentum=1/num_batches_tracked instead)"
        if momentum is None
        else "",
    )
    eps = _real_scalar(op, "eps", eps)
    c = x.shape[1]
    rm = _channel_vector(op, "running_mean", running_mean, c, x.shape, strict=True)
    rv = _channel_vector(op, "running_var", running_var, c, x.shape, strict=True)
    w = _channel_vector(op, "weight", weight, c, x.shape, strict=False)
    b = _channel_vector(op, "bias", bias, c, x.shape, strict=False)
    _check_mode(x, rm, rv, eps, training, axis_name)
    return _batch_norm(x, rm, rv, w, b, momentum, eps, training=training, axis_name=axis_name)
