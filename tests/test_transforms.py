"""Generic JAX-transformation checks of every registered op.

jit vs eager; vmap (leading, non-leading and partially batched) vs a Python
loop; vjp of vmap vs a loop of vjps; jvp vs vjp; and, on a few small samples
per op, jacfwd vs jacrev, a float64 Hessian-vector product vs finite
differences and remat gradients.
"""

from __future__ import annotations

import operator

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxops.testing import REGISTRY, Tol, is_floating, parity

from cases import sample_cases, small_cases

# The transformation checks compare jaxops with itself, so an evenly spread subset of each
# op's samples (corners included) keeps the suite inside its time budget; torch parity
# (tests/test_parity.py) runs every sample.
TRANSFORM_SAMPLES_PER_OP = 8


@pytest.mark.parametrize("info,sample", sample_cases("jit", per_op=TRANSFORM_SAMPLES_PER_OP))
def test_jit_matches_eager(info, sample):
    refs = parity.array_refs(sample)
    values = [parity.to_jax(sample.get(r)) for r in refs]
    f = parity.bind(info, sample, refs)
    jitted, eager = jax.jit(f)(*values), f(*values)
    parity.assert_trees_close(jitted, eager, sample.fwd_tol or info.fwd_tol, "jit")
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jitted, eager
    )  # compare() reads floats as float64


def _batch_variants(a: np.ndarray) -> list[np.ndarray]:
    """Three members of a batch built from one sample, keeping its values (and validity)."""
    flipped = np.flip(a, 0) if a.ndim else a
    scaled = (a * 0.5).astype(a.dtype) if is_floating(a.dtype) else a
    return [a, np.array(flipped), np.asarray(scaled)]


def _vmap_members(info, sample):
    """The op as a function of its batched arguments, and three members of a batch of them."""
    refs = info.vmap_refs(sample)
    if not refs:
        pytest.skip("no batched argument")
    members = list(zip(*[_batch_variants(sample.get(r)) for r in refs]))
    return refs, parity.bind(info, sample, refs), members


@pytest.mark.parametrize("info,sample", sample_cases("vmap", per_op=TRANSFORM_SAMPLES_PER_OP))
def test_vmap_matches_loop(info, sample):
    refs, f, members = _vmap_members(info, sample)
    stacked = [jnp.stack([jnp.asarray(m[k]) for m in members]) for k in range(len(refs))]
    batched = jax.vmap(f)(*stacked)
    looped = [f(*[jnp.asarray(v) for v in m]) for m in members]
    expected = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
    parity.assert_trees_close(batched, expected, sample.fwd_tol or info.fwd_tol, "vmap")


@pytest.mark.parametrize("info,sample", sample_cases("jvp", per_op=TRANSFORM_SAMPLES_PER_OP))
def test_jvp_consistent_with_vjp(info, sample):
    """<cotangent, J tangent> (forward mode) equals <J^T cotangent, tangent> (reverse mode)."""
    refs = info.grad_refs(sample)
    if not refs:
        pytest.skip("no differentiable input")
    if not sample.all_finite():
        pytest.skip("inner products with NaN/inf are not comparable")
    f = parity.bind(info, sample, refs)
    primals = [parity.to_jax(sample.get(r)) for r in refs]
    rng = np.random.default_rng(1)
    tangents = [jnp.asarray(rng.standard_normal(p.shape), p.dtype) for p in primals]
    out, out_tangent = jax.jvp(f, primals, tangents)
    out_leaves, treedef = jax.tree_util.tree_flatten(out)
    if not all(
        np.isfinite(np.asarray(x, np.float64)).all()
        for x in out_leaves
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ):
        pytest.skip("non-finite output (e.g. 0/0): inner products are not comparable")
    carrying = info.grad_outputs
    cots = []
    for pos, leaf in enumerate(out_leaves):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            cots.append(np.zeros(leaf.shape, jax.dtypes.float0))
        elif carrying is not None and pos not in carrying:
            cots.append(jnp.zeros_like(leaf))
        else:
            cots.append(jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype))
    grads = jax.vjp(f, *primals)[1](jax.tree_util.tree_unflatten(treedef, cots))
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    forward = sum(
        float(np.sum(f64(c) * f64(t)))
        for c, t in zip(cots, jax.tree_util.tree_leaves(out_tangent))
        if c.dtype != jax.dtypes.float0
    )
    reverse = sum(float(np.sum(f64(g) * f64(t))) for g, t in zip(grads, tangents))
    scale = sum(float(np.sum(np.abs(f64(g) * f64(t)))) for g, t in zip(grads, tangents))
    rtol = max(1e-5, 50 * float(jnp.finfo(primals[0].dtype).eps))
    assert abs(forward - reverse) <= rtol * scale + 1e-6, (forward, reverse)


def _stack_at(arrays, axis):
    return jnp.stack([jnp.asarray(a) for a in arrays], axis=axis)


@pytest.mark.parametrize("info,sample", sample_cases("vmap", per_op=5))
def test_vmap_non_leading_axes_matches_loop(info, sample):
    """The mapped axis sits inside each argument (axis 1) and at the end of each output."""
    refs, f, members = _vmap_members(info, sample)
    in_axes = [min(1, np.ndim(sample.get(r))) for r in refs]
    stacked = [_stack_at([m[k] for m in members], ax) for k, ax in enumerate(in_axes)]
    batched = jax.vmap(f, in_axes=in_axes, out_axes=-1)(*stacked)
    looped = [f(*[jnp.asarray(v) for v in m]) for m in members]
    expected = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis=-1), *looped)
    parity.assert_trees_close(
        batched, expected, sample.fwd_tol or info.fwd_tol, "vmap(axis 1 -> -1)"
    )


def _several_batched_args(per_op: int) -> list:
    chosen, count = [], {}
    for case in sample_cases("vmap"):
        info, sample = case.values
        if len(info.vmap_refs(sample)) >= 2 and count.get(info.name, 0) < per_op and not case.marks:
            count[info.name] = count.get(info.name, 0) + 1
            chosen.append(case)
    return chosen


@pytest.mark.parametrize("info,sample", _several_batched_args(per_op=3))
def test_vmap_one_argument_batched_matches_loop(info, sample):
    """Only one argument is batched, the others are shared (``in_axes=None``): e.g. one weight,
    many inputs."""
    refs = info.vmap_refs(sample)
    f = parity.bind(info, sample, refs)
    values = [jnp.asarray(sample.get(r)) for r in refs]
    tol = sample.fwd_tol or info.fwd_tol
    for k, ref in enumerate(refs):
        members = _batch_variants(sample.get(ref))
        in_axes = [0 if j == k else None for j in range(len(refs))]
        args = [_stack_at(members, 0) if j == k else v for j, v in enumerate(values)]
        batched = jax.vmap(f, in_axes=in_axes)(*args)
        looped = [
            f(*[jnp.asarray(m) if j == k else v for j, v in enumerate(values)]) for m in members
        ]
        expected = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
        parity.assert_trees_close(batched, expected, tol, f"vmap(only {ref!r})")


def _random_cotangent(out, rng):
    """A standard-normal cotangent for each floating leaf of ``out``, float0 for the others."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(rng.standard_normal(x.shape), x.dtype)
            if jnp.issubdtype(x.dtype, jnp.inexact)
            else np.zeros(x.shape, jax.dtypes.float0)
        ),
        out,
    )


@pytest.mark.parametrize("info,sample", small_cases("vmap", per_op=3, max_numel=512))
def test_vjp_of_vmap_matches_loop(info, sample):
    """Reverse mode through ``vmap`` with every batched argument batched, the
    non-differentiable ones too (boxes, unpooling indices): each member's gradient is
    its own vjp's. Batched non-differentiable arguments turn ``cond`` predicates and
    gather indices into batched values inside the linearised program, which the
    forward-only vmap checks never transpose."""
    refs, f, members = _vmap_members(info, sample)
    diff = [k for k, r in enumerate(refs) if r in info.grad_refs(sample)]
    if not diff:
        pytest.skip("no differentiable batched argument")
    stacked = [jnp.stack([jnp.asarray(m[k]) for m in members]) for k in range(len(refs))]

    def vjp_at(fn, args, cot):
        """The vjp of ``fn`` at ``args`` w.r.t. the differentiable ones, the others fixed."""

        def of_diff(*d):
            full = list(args)
            for k, v in zip(diff, d):
                full[k] = v
            return fn(*full)

        return jax.vjp(of_diff, *[args[k] for k in diff])[1](cot)

    batched_f = jax.vmap(f)
    cot = _random_cotangent(jax.eval_shape(batched_f, *stacked), np.random.default_rng(5))
    batched = vjp_at(batched_f, stacked, cot)
    tol = _grad_tol(info, sample)
    for i, member in enumerate(members):
        member_cot = jax.tree_util.tree_map(operator.itemgetter(i), cot)
        expected = vjp_at(f, [jnp.asarray(v) for v in member], member_cot)
        got = [g[i] for g in batched]
        parity.assert_trees_close(got, list(expected), tol, f"vjp(vmap) member {i}")


# ---------------------------------------------------------------- second order, Jacobians, remat


def _inexact_leaves(out):
    """The floating output leaves as a list (integer outputs such as indices carry no
    derivative)."""
    return [x for x in jax.tree_util.tree_leaves(out) if jnp.issubdtype(x.dtype, jnp.inexact)]


def _grad_tol(info, sample):
    tol = sample.grad_tol or info.grad_tol
    return Tol(max(tol.rtol, 1e-5), max(tol.atol, 1e-6))


def test_every_op_has_small_samples_for_the_costly_checks():
    """Each op must offer small, finite float32 samples, or the checks below would pass
    vacuously."""
    covered = {p.values[0].name for p in small_cases("jacobian")}
    assert covered == set(REGISTRY), (
        f"no small float32 sample for {sorted(set(REGISTRY) - covered)}"
    )


@pytest.mark.parametrize("info,sample", small_cases("jacobian"))
def test_jacfwd_matches_jacrev(info, sample):
    refs = info.grad_refs(sample)
    f = parity.bind(info, sample, refs)
    g = lambda *p: _inexact_leaves(f(*p))  # noqa: E731
    primals = [parity.to_jax(sample.get(r)) for r in refs]
    argnums = tuple(range(len(refs)))
    forward = jax.jacfwd(g, argnums=argnums)(*primals)
    reverse = jax.jacrev(g, argnums=argnums)(*primals)
    parity.assert_trees_close(forward, reverse, _grad_tol(info, sample), "jacfwd vs jacrev")


def _perturbed(primals, rng):
    """Moves the point off exact ties (max pooling) so the loss is smooth around it.

    The finite differences below step by ~1e-5; the perturbation is ~1e-2 of each value.
    """
    return [p + 1e-2 * (jnp.abs(p) + 0.1) * rng.standard_normal(p.shape) for p in primals]


@pytest.mark.parametrize("info,sample", small_cases("hvp", per_op=2))
def test_hessian_vector_product_matches_finite_differences(info, sample):
    """Forward-over-reverse HVP of a nonlinear scalar loss through the op, in float64.

    Samples declaring a deviation (``SampleInput.xfail["hvp"]``) are strict expected failures.
    """
    with jax.enable_x64(True):
        sample64 = parity.cast_floating(sample, np.float64)
        refs = info.grad_refs(sample64)
        f = parity.bind(info, sample64, refs)
        rng = np.random.default_rng(7)
        primals = _perturbed([jnp.asarray(sample64.get(r)) for r in refs], rng)
        shapes = _inexact_leaves(jax.eval_shape(f, *primals))
        assert all(s.dtype == jnp.float64 for s in shapes), [s.dtype for s in shapes]
        weights = [jnp.asarray(rng.standard_normal(s.shape)) for s in shapes]

        def loss(*p):
            outs = _inexact_leaves(f(*p))
            return sum(jnp.sum(w * y + 0.5 * y * y) for w, y in zip(weights, outs))

        grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(refs)))))
        v = [jnp.asarray(rng.standard_normal(p.shape)) for p in primals]
        _, hvp = jax.jit(lambda p, t: jax.jvp(grad, p, t))(tuple(primals), tuple(v))
        h = 1e-5
        plus = grad(*[p + h * t for p, t in zip(primals, v)])
        minus = grad(*[p - h * t for p, t in zip(primals, v)])
        for k, (ours, gp, gm) in enumerate(zip(hvp, plus, minus)):
            ours, fd = np.asarray(ours), (np.asarray(gp) - np.asarray(gm)) / (2 * h)
            assert ours.dtype == np.float64
            assert np.isfinite(ours).all(), f"non-finite HVP for argument {refs[k]!r}"
            scale = 1.0 + float(np.max(np.abs(fd), initial=0.0))
            np.testing.assert_allclose(
                ours, fd, rtol=1e-6, atol=1e-7 * scale, err_msg=f"HVP w.r.t. {refs[k]!r}"
            )


@pytest.mark.parametrize("info,sample", small_cases("remat", per_op=4))
def test_checkpoint_gradients_match_plain_vjp(info, sample):
    """``jax.checkpoint`` recomputes the forward pass in the backward pass: the same gradients,
    to rounding.

    Not bit for bit: the recomputation and the backward pass it feeds are other XLA
    programs than the plain VJP's (other fusions, FMA contraction where the CPU has FMA,
    other vector widths), so their rounding may differ from one CPU to the next. A
    broken rematerialisation (wrong residuals, stale values) is off by far more than
    the op's gradient tolerance.
    """
    refs = info.grad_refs(sample)
    f = parity.bind(info, sample, refs)
    primals = [parity.to_jax(sample.get(r)) for r in refs]
    out = f(*primals)
    cot = _random_cotangent(out, np.random.default_rng(3))
    plain = jax.vjp(f, *primals)[1](cot)
    tol = _grad_tol(info, sample)
    remat = jax.vjp(jax.checkpoint(f), *primals)[1](cot)
    parity.assert_trees_close(remat, plain, tol, "checkpoint")
    remat_jit = jax.jit(lambda *p: jax.vjp(jax.checkpoint(f), *p)[1](cot))(*primals)
    parity.assert_trees_close(remat_jit, plain, tol, "jit(checkpoint)")
