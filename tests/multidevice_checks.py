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
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxops
from jaxops.testing import Tol, parity

from cases import batch_cases, small_cases

N_DEVICES = 8


def test_eight_devices():
    assert jax.device_count() == N_DEVICES, (
        f"{jax.device_count()} devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    )


@pytest.fixture(scope="module")
def mesh():
    """An 8-device mesh with one ``batch`` axis, ``AxisType.Auto``: the compiler propagates
    shardings.

    Explicit axes (shardings in the types, ``jax.make_mesh``'s default) are not
    supported by every op yet: see docs/transforms.md, "Many devices".
    """
    if jax.device_count() < N_DEVICES:
        pytest.skip("needs 8 devices")
    return jax.make_mesh((N_DEVICES,), ("batch",), axis_types=(AxisType.Auto,))


def _single_device(values):
    return [jax.device_put(v, jax.devices()[0]) for v in values]


def _assert_batch_sharded(leaf, what):
    """The leading (batch) axis of ``leaf`` is still split over the 8 devices: nothing was
    gathered."""
    shard = leaf.sharding.shard_shape(leaf.shape)
    assert shard[0] * N_DEVICES == leaf.shape[0], (
        f"{what}: output of shape {leaf.shape} has shards of shape {shard} ({leaf.sharding}): "
        "the batch axis was gathered"
    )


def _variants(a: np.ndarray, n: int) -> list[np.ndarray]:
    if a.dtype.kind in "iub":
        return [a] * n
    return [(a * (1.0 - 0.05 * k)).astype(a.dtype) for k in range(n)]


def _check_sharded(f, values, info, sample, refs, is_batched, mesh, what):
    """``jit(f)`` on ``values`` split along axis 0 over the mesh vs on one device.

    ``f`` is ``sample``'s call of ``info``'s op as a function of the arguments
    ``refs``, whose values are ``values``. Outputs (and the gradients w.r.t. the
    differentiable ones among them, with cotangents split like the outputs) must
    match at the sample's tolerances, and every output leaf for which
    ``is_batched(index, sharded_leaf, single_device_leaf)`` holds, and every
    gradient, must still be split 8 ways along its leading axis.
    """
    diff = set(info.grad_refs(sample))
    grad_pos = [k for k, r in enumerate(refs) if r in diff]
    tol, grad_tol = sample.fwd_tol or info.fwd_tol, sample.grad_tol or info.grad_tol
    split, whole = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    sharded = [jax.device_put(v, split) for v in values]
    single = _single_device(values)
    jf = jax.jit(f)
    expected = jf(*single)
    with jax.set_mesh(mesh):
        actual = jf(*sharded)
    parity.assert_trees_close(actual, expected, tol, what)
    a_leaves, treedef = jax.tree_util.tree_flatten(actual)
    e_leaves = jax.tree_util.tree_leaves(expected)
    batched = [bool(is_batched(i, a, e)) for i, (a, e) in enumerate(zip(a_leaves, e_leaves))]
    for i, (leaf, b) in enumerate(zip(a_leaves, batched)):
        if b:
            _assert_batch_sharded(leaf, f"{what} output[{i}]")
    if not grad_pos:
        return
    inexact = [i for i, leaf in enumerate(e_leaves) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    rng = np.random.default_rng(0)
    cots = [rng.standard_normal(e_leaves[i].shape).astype(e_leaves[i].dtype) for i in inexact]

    def pull(vals, cots):
        def g(*diff):
            full = list(vals)
            for p, d in zip(grad_pos, diff):
                full[p] = d
            return f(*full)

        out, vjp = jax.vjp(g, *[vals[p] for p in grad_pos])
        leaves = [
            np.zeros(leaf.shape, jax.dtypes.float0) for leaf in jax.tree_util.tree_leaves(out)
        ]
        for i, c in zip(inexact, cots):
            leaves[i] = c
        return vjp(jax.tree_util.tree_unflatten(treedef, leaves))

    sharded_cots = [
        jax.device_put(c, split if batched[i] else whole) for i, c in zip(inexact, cots)
    ]
    with jax.set_mesh(mesh):
        grads = jax.jit(pull)(sharded, sharded_cots)
    parity.assert_trees_close(
        grads, jax.jit(pull)(single, _single_device(cots)), grad_tol, f"{what} gradient"
    )
    if any(
        batched
    ):  # RoI ops map the batch to K replicated rows: their input gradient is a replicated scatter
        for p, g in zip(grad_pos, grads):
            _assert_batch_sharded(g, f"{what} gradient w.r.t. argument {p}")


@pytest.mark.parametrize("info,sample", small_cases("sharding", per_op=2, max_numel=512))
def test_vmapped_op_on_sharded_batch(info, sample, mesh):
    """``jit(vmap(op))`` on a batch of 16 sharded over 8 devices, forward and VJP."""
    refs = info.vmap_refs(sample)
    stacked = [np.stack(_variants(sample.get(r), 2 * N_DEVICES)) for r in refs]

    # A leaf equal across the batch (e.g. running statistics passed through in
    # evaluation mode) does not depend on it: vmap broadcasts it, replicated.
    def is_batched(i, leaf, e):
        return not (np.asarray(e) == np.asarray(e)[:1]).all()

    f = jax.vmap(parity.bind(info, sample, refs))
    _check_sharded(f, stacked, info, sample, refs, is_batched, mesh, "vmap")


@pytest.mark.parametrize("info,sample", batch_cases("sharding"))
def test_op_on_batch_axis_sharded(info, sample, mesh):
    """The op's own batch axis N (inputs tiled to 8N) split over 8 devices; plain ``jit``."""
    refs = info.batch_refs(sample)
    f = parity.bind(info, sample, refs)
    values = [
        np.concatenate(_variants(sample.get(r), N_DEVICES))
        if k == 0
        else np.concatenate([sample.get(r)] * N_DEVICES)
        for k, r in enumerate(refs)
    ]
    # Outputs whose leading axis grows with N carry the batch axis (RoI outputs have K rows
    # instead).
    small = jax.tree_util.tree_leaves(f(*[jnp.asarray(sample.get(r)) for r in refs]))

    def is_batched(i, leaf, e):
        return small[i].ndim > 0 and small[i].shape[0] * N_DEVICES == leaf.shape[0]

    _check_sharded(f, values, info, sample, refs, is_batched, mesh, "sharded")


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
    out = torch.nn.functional.batch_norm(
        xt, rmt, rvt, wt, bt, training=True, momentum=momentum, eps=eps
    )
    grads = torch.autograd.grad(out, (xt, wt, bt), torch.tensor(cot))
    return [out.detach().numpy(), rmt.numpy(), rvt.numpy()], [g.numpy() for g in grads]


# Statistics over 128 values per channel, summed in a different order (and split 8 ways).
BN_TOL = Tol(1e-5, 1e-5)


def _check(actual, expected, what):
    for i, (a, e) in enumerate(zip(actual, expected)):
        c = parity.compare(f"{what}[{i}]", np.asarray(a), e, BN_TOL)
        assert c.ok, f"{c.what}: {c.message}"


def _run_data_parallel(step, problem, mesh, what):
    """``step(x, w, b, cot)`` on the batch-sharded input and cotangent: torch's single-process
    outputs and gradients, and both still split over the devices."""
    x, rm, rv, w, b, cot = problem
    expected, expected_grads = _bn_torch(*problem)
    xs, cots = (jax.device_put(a, NamedSharding(mesh, P("batch"))) for a in (x, cot))
    with jax.set_mesh(mesh):
        out, grads = step(xs, w, b, cots)
    _check(out, expected, f"batch_norm ({what})")
    _check(grads, expected_grads, f"batch_norm grads ({what})")
    _assert_batch_sharded(out[0], "output")
    _assert_batch_sharded(grads[0], "grad input")


def test_batch_norm_training_sharded_input_plain_jit(mesh):
    """Route 1: plain ``jit`` on a batch-sharded input; XLA inserts the all-reduce of the
    statistics."""
    problem = _bn_problem()
    rm, rv = problem[1:3]

    @jax.jit
    def step(x, w, b, cot):
        def f(x, w, b):
            return jaxops.batch_norm(x, rm, rv, w, b, training=True)

        out, vjp = jax.vjp(f, x, w, b)
        zeros = jnp.zeros_like(out[1]), jnp.zeros_like(out[2])
        return out, vjp(type(out)(cot, *zeros))

    _run_data_parallel(step, problem, mesh, "jit, sharded")


def test_batch_norm_training_shard_map_axis_name(mesh):
    """Route 2: ``shard_map`` over the batch axis with ``axis_name``: global statistics by
    collectives."""
    problem = _bn_problem()
    rm, rv = problem[1:3]

    def local(x, rm, rv, w, b):
        out = jaxops.batch_norm(x, rm, rv, w, b, training=True, axis_name="batch")
        return tuple(out)

    sharded_bn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P("batch"), P(), P(), P(), P()),
        out_specs=(P("batch"), P(), P()),
    )

    @jax.jit
    def step(x, w, b, cot):
        out, vjp = jax.vjp(lambda x, w, b: sharded_bn(x, rm, rv, w, b), x, w, b)
        return out, vjp((cot, jnp.zeros_like(out[1]), jnp.zeros_like(out[2])))

    _run_data_parallel(step, problem, mesh, "shard_map")
