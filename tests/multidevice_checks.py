"""Multi-device checks, run by ``test_sharding.py`` in a process of its own with 8 CPU devices.

Not collected by a plain ``pytest`` run (the name does not start with ``test_``):
the device count is fixed when JAX starts, and the suite's workers start with one.
Run by hand with::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 pytest -n0 tests/multidevice_checks.py

Every op, applied to a batch sharded over an 8-device mesh (``NamedSharding``
on the batch axis), gives the single-device result and leaves its output
sharded; batch_norm's global batch statistics under data parallelism match
torch's single-process result, both with plain ``jit`` on sharded inputs and
with ``shard_map`` + ``axis_name``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import jaxops
from cases import batch_cases, batch_refs, small_cases
from jaxops.testing import Tol, parity

N_DEVICES = 8


def test_eight_devices():
    assert jax.device_count() == N_DEVICES, (
        f"{jax.device_count()} devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    )


@pytest.fixture(scope="module", params=["auto", "explicit"])
def mesh(request):
    """An 8-device mesh with one ``batch`` axis.

    ``auto``: the compiler propagates shardings (GSPMD), the classic mode.
    ``explicit``: shardings are part of the array types (``jax.make_mesh``'s
    default since JAX 0.7): every op must resolve its output sharding.
    """
    if jax.device_count() < N_DEVICES:
        pytest.skip("needs 8 devices")
    kind = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}[request.param]
    return jax.make_mesh((N_DEVICES,), ("batch",), axis_types=(kind,))


def _bound(info, sample, refs):
    def f(*values):
        return parity.call_jax(info, sample, **{parity.override_key(r): v for r, v in zip(refs, values)})

    return f


def _single_device(values):
    return [jax.device_put(v, jax.devices()[0]) for v in values]


def _assert_close(actual, expected, tol, what):
    """Equal to the single-device result, leaf by leaf."""
    a_leaves, e_leaves = parity.leaves(actual), parity.leaves(expected)
    assert len(a_leaves) == len(e_leaves), what
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        c = parity.compare(f"{what}[{i}]", a, e, tol)
        assert c.ok, f"{c.what}: {c.message}"


def _assert_batch_sharded(leaf, what):
    """The leading (batch) axis of ``leaf`` is still split over the 8 devices: nothing was gathered."""
    shard = leaf.sharding.shard_shape(leaf.shape)
    assert shard[0] * N_DEVICES == leaf.shape[0], (
        f"{what}: output of shape {leaf.shape} has shards of shape {shard} ({leaf.sharding}): "
        "the batch axis was gathered"
    )


def _variants(a: np.ndarray, n: int) -> list[np.ndarray]:
    if a.dtype.kind in "iub":
        return [a] * n
    return [(a * (1.0 - 0.05 * k)).astype(a.dtype) for k in range(n)]


@pytest.mark.parametrize("info,sample", small_cases("sharding", per_op=2, max_numel=512))
def test_vmapped_op_on_sharded_batch(info, sample, mesh):
    """``jit(vmap(op))`` on a batch of 16 sharded over 8 devices."""
    refs = info.vmap_refs(sample)
    f = jax.jit(jax.vmap(_bound(info, sample, refs)))
    batch = 2 * N_DEVICES
    stacked = [np.stack(_variants(sample.get(r), batch)) for r in refs]
    sharding = NamedSharding(mesh, P("batch"))
    sharded = [jax.device_put(s, sharding) for s in stacked]
    actual = f(*sharded)
    expected = f(*_single_device(stacked))
    _assert_close(actual, expected, sample.fwd_tol or info.fwd_tol, "vmap")
    for i, (leaf, e) in enumerate(zip(parity.leaves(actual), parity.leaves(expected))):
        # A leaf equal across the batch (e.g. running statistics passed through in
        # evaluation mode) does not depend on it: vmap broadcasts it, replicated.
        if leaf is not None and not (np.asarray(e) == np.asarray(e)[:1]).all():
            _assert_batch_sharded(leaf, f"vmap output[{i}]")


@pytest.mark.parametrize("info,sample", batch_cases("sharding"))
def test_op_on_batch_axis_sharded(info, sample, mesh):
    """The op's own batch axis N (inputs tiled to 8N) split over 8 devices; plain ``jit``."""
    refs = batch_refs(info, sample)
    f = jax.jit(_bound(info, sample, refs))
    values = [
        np.concatenate(_variants(sample.get(r), N_DEVICES)) if k == 0 else np.concatenate([sample.get(r)] * N_DEVICES)
        for k, r in enumerate(refs)
    ]
    sharding = NamedSharding(mesh, P("batch"))
    sharded = [jax.device_put(v, sharding) for v in values]
    actual = f(*sharded)
    _assert_close(actual, f(*_single_device(values)), sample.fwd_tol or info.fwd_tol, "sharded")
    # Outputs whose leading axis grows with N carry the batch axis (RoI outputs have K rows instead).
    small = parity.leaves(f(*[jnp.asarray(sample.get(r)) for r in refs]))
    for i, (leaf, one) in enumerate(zip(parity.leaves(actual), small)):
        if leaf is not None and one.ndim and one.shape[0] * N_DEVICES == leaf.shape[0]:
            _assert_batch_sharded(leaf, f"output[{i}]")


# ---------------------------------------------------------------- batch_norm, data parallel


def _bn_problem():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4 * N_DEVICES, 3, 5, 4)) * 2 + 1).astype(np.float32)
    rm = rng.standard_normal(3).astype(np.float32)
    rv = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    return x, rm, rv, w, b, cot


def _bn_torch(x, rm, rv, w, b, cot, momentum=0.1, eps=1e-5):
    import torch

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    out = torch.nn.functional.batch_norm(xt, rmt, rvt, wt, bt, training=True, momentum=momentum, eps=eps)
    grads = torch.autograd.grad(out, (xt, wt, bt), torch.tensor(cot))
    return [out.detach().numpy(), rmt.numpy(), rvt.numpy()], [g.numpy() for g in grads]


# Statistics over 128 values per channel, summed in a different order (and split 8 ways).
BN_TOL = Tol(1e-5, 1e-5)


def _check(actual, expected, what):
    for i, (a, e) in enumerate(zip(actual, expected)):
        c = parity.compare(f"{what}[{i}]", np.asarray(a), e, BN_TOL)
        assert c.ok, f"{c.what}: {c.message}"


def _batch_norm_or_skip(*args, **kwargs):
    try:
        return jaxops.batch_norm(*args, **kwargs)
    except NotImplementedError as e:
        pytest.skip(f"waiting for batch_norm: {e}")


def test_batch_norm_training_sharded_input_plain_jit(mesh):
    """Route 1: plain ``jit`` on a batch-sharded input; XLA inserts the all-reduce of the statistics."""
    x, rm, rv, w, b, cot = _bn_problem()
    expected, expected_grads = _bn_torch(x, rm, rv, w, b, cot)
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    cots = jax.device_put(cot, NamedSharding(mesh, P("batch")))

    @jax.jit
    def step(x, w, b, cot):
        def f(x, w, b):
            return _batch_norm_or_skip(x, rm, rv, w, b, training=True)

        out, vjp = jax.vjp(f, x, w, b)
        zeros = jnp.zeros_like(out[1]), jnp.zeros_like(out[2])
        return out, vjp(type(out)(cot, *zeros))

    out, grads = step(xs, w, b, cots)
    _check(out, expected, "batch_norm (jit, sharded)")
    _check(grads, expected_grads, "batch_norm grads (jit, sharded)")
    _assert_batch_sharded(out[0], "output")
    _assert_batch_sharded(grads[0], "grad input")


def test_batch_norm_training_shard_map_axis_name(mesh):
    """Route 2: ``shard_map`` over the batch axis with ``axis_name``: global statistics by collectives."""
    x, rm, rv, w, b, cot = _bn_problem()
    expected, expected_grads = _bn_torch(x, rm, rv, w, b, cot)

    def local(x, rm, rv, w, b):
        out = _batch_norm_or_skip(x, rm, rv, w, b, training=True, axis_name="batch")
        return tuple(out)

    sharded_bn = jax.shard_map(
        local, mesh=mesh, in_specs=(P("batch"), P(), P(), P(), P()), out_specs=(P("batch"), P(), P())
    )

    @jax.jit
    def step(x, w, b, cot):
        out, vjp = jax.vjp(lambda x, w, b: sharded_bn(x, rm, rv, w, b), x, w, b)
        return out, vjp((cot, jnp.zeros_like(out[1]), jnp.zeros_like(out[2])))

    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    cots = jax.device_put(cot, NamedSharding(mesh, P("batch")))
    out, grads = step(xs, w, b, cots)
    _check(out, expected, "batch_norm (shard_map)")
    _check(grads, expected_grads, "batch_norm grads (shard_map)")
    _assert_batch_sharded(out[0], "output")
    _assert_batch_sharded(grads[0], "grad input")
