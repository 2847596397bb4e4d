"""Running one sample through jaxops and torch, and comparing the results.

Shared by the test suite and ``python -m jaxops``: inputs are generated once
in NumPy and fed to both frameworks; forward outputs and VJPs (same random
cotangent on both sides) are compared leaf by leaf.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxops.testing.opinfo import ArgRef, OpInfo, SampleInput, Tol, is_floating


def _map_arrays(fn: Callable[[np.ndarray], Any], value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):  # NumPy scalars are 0-d arrays here
        return fn(np.asarray(value))
    if isinstance(value, list):
        return [_map_arrays(fn, v) for v in value]
    return value


def to_jax(value: Any) -> Any:
    """NumPy arrays (also inside lists) to JAX arrays; everything else unchanged."""
    return _map_arrays(jnp.asarray, value)


# Where the torch reference runs; benchmarks/gpu_check.py moves it to CUDA.
_TORCH_DEVICE = "cpu"


@contextlib.contextmanager
def torch_device(device: str) -> Iterator[None]:
    """Runs the torch references on ``device`` (e.g. ``"cuda"``) within this context."""
    global _TORCH_DEVICE
    previous, _TORCH_DEVICE = _TORCH_DEVICE, device
    try:
        yield
    finally:
        _TORCH_DEVICE = previous


def to_torch(value: Any) -> Any:
    """NumPy arrays to torch tensors (bfloat16 via float32, which NumPy interop lacks)."""
    import torch

    def convert(a: np.ndarray) -> Any:
        if a.dtype == jnp.bfloat16:
            return torch.from_numpy(a.astype(np.float32)).to(_TORCH_DEVICE, torch.bfloat16)
        return torch.from_numpy(np.array(a, copy=True)).to(_TORCH_DEVICE)

    return _map_arrays(convert, value)


def leaves(out: Any) -> list[Any]:
    """Flattens tuples (NamedTuples too) and lists, keeping ``None`` leaves in place."""
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in leaves(item)]
    return [out]


def to_numpy(leaf: Any) -> np.ndarray | None:
    if leaf is None:
        return None
    if hasattr(leaf, "detach"):  # a torch tensor; bfloat16 has no NumPy dtype
        t = leaf.detach().cpu()
        if t.dtype.is_floating_point and t.element_size() < 4:
            t = t.float()
        return t.numpy()
    return np.asarray(leaf)


def cast_floating(sample: SampleInput, dtype: Any) -> SampleInput:
    """A copy of ``sample`` with every floating NumPy array (inside lists too) cast to ``dtype``."""

    def cast(a: np.ndarray) -> np.ndarray:
        return a.astype(dtype) if is_floating(a.dtype) else a

    return dataclasses.replace(
        sample,
        args=tuple(_map_arrays(cast, a) for a in sample.args),
        kwargs={k: _map_arrays(cast, v) for k, v in sample.kwargs.items()},
    )


def call_jax(info: OpInfo, sample: SampleInput, **overrides: Any) -> Any:
    """Calls the jaxops op; ``overrides`` maps ``"arg<i>"``/keyword names to replacement values."""
    args = [overrides.get(f"arg{i}", to_jax(a)) for i, a in enumerate(sample.args)]
    kwargs = {k: overrides.get(k, to_jax(v)) for k, v in sample.kwargs.items()}
    return info.op(*args, **kwargs)


def override_key(ref: ArgRef) -> str:
    return f"arg{ref}" if isinstance(ref, int) else ref


def array_refs(sample: SampleInput) -> list[ArgRef]:
    """The arguments of ``sample`` that are NumPy arrays (positions, then keyword names)."""
    return [i for i, a in enumerate(sample.args) if isinstance(a, np.ndarray)] + [
        k for k, v in sample.kwargs.items() if isinstance(v, np.ndarray)
    ]


def bind(info: OpInfo, sample: SampleInput, refs: Sequence[ArgRef]) -> Callable[..., Any]:
    """The op as a function of the arguments ``refs`` only (the rest closed over, static)."""

    def f(*values: Any) -> Any:
        return call_jax(info, sample, **{override_key(r): v for r, v in zip(refs, values)})

    return f


def call_torch(info: OpInfo, sample: SampleInput, requires_grad: Sequence[ArgRef] = ()):
    """Calls the torch reference; returns its output and the tensors of ``requires_grad``."""
    args = [to_torch(a) for a in sample.args]
    kwargs = {k: to_torch(v) for k, v in sample.kwargs.items()}
    grads_of = []
    for ref in requires_grad:
        tensor = args[ref] if isinstance(ref, int) else kwargs[ref]
        tensor.requires_grad_(True)
        grads_of.append(tensor)
    return info.ref(*args, **kwargs), grads_of


@dataclasses.dataclass
class Comparison:
    """The outcome of comparing one jaxops leaf with the torch leaf."""

    what: str
    ok: bool
    max_abs: float = 0.0
    sq_sum: float = 0.0  # squared error over positions finite in both, for RMSE
    count: int = 0
    message: str = ""
    dtype: str = ""


def compare(what: str, actual: Any, expected: Any, tol: Tol) -> Comparison:
    """NaN/inf patterns and shapes must agree; finite values within ``tol``; integers exactly."""
    a, e = to_numpy(actual), to_numpy(expected)
    if a is None or e is None:
        ok = a is None and e is None
        return Comparison(what, ok, message="" if ok else f"None vs {type(expected).__name__}")
    if a.shape != e.shape:
        return Comparison(what, False, message=f"shape {a.shape} != torch {e.shape}")
    if a.dtype.kind in "iub" or e.dtype.kind in "iub":  # indices, masks: exact
        if a.dtype.kind != e.dtype.kind and not {a.dtype.kind, e.dtype.kind} <= {"i", "u"}:
            return Comparison(what, False, message=f"dtype {a.dtype} vs torch {e.dtype}")
        bad = int(np.sum(a != e))
        return Comparison(
            what,
            bad == 0,
            float(np.max(np.abs(a.astype(np.int64) - e), initial=0)),
            0.0,
            a.size,
            f"{bad} of {a.size} integers differ" if bad else "",
        )
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    finite = np.isfinite(a64) & np.isfinite(e64)
    same_special = np.array_equal(np.isnan(a64), np.isnan(e64)) and np.array_equal(
        np.where(np.isinf(a64), a64, 0), np.where(np.isinf(e64), e64, 0)
    )
    diff = np.abs(a64[finite] - e64[finite])
    bound = tol.atol + tol.rtol * np.abs(e64[finite])
    n_bad = int(np.sum(diff > bound))
    max_abs = float(diff.max(initial=0.0))
    message = ""
    if not same_special:
        message = "NaN/inf pattern differs from torch"
    elif n_bad:
        worst = int(np.argmax(diff - bound))
        message = (
            f"{n_bad} of {diff.size} elements differ (max abs {max_abs:.3g}; worst "
            f"{a64[finite][worst]!r} vs torch {e64[finite][worst]!r}; "
            f"rtol={tol.rtol}, atol={tol.atol})"
        )
    return Comparison(
        what,
        same_special and n_bad == 0,
        max_abs,
        float(np.sum(diff**2)),
        int(diff.size),
        message,
        str(a.dtype),
    )


def assert_trees_close(actual: Any, expected: Any, tol: Tol, what: str) -> None:
    """Two jaxops results (or transformed results) agree leaf by leaf, as :func:`compare` says."""
    a_leaves, e_leaves = leaves(actual), leaves(expected)
    assert len(a_leaves) == len(e_leaves), what
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        c = compare(f"{what}[{i}]", a, e, tol)
        assert c.ok, f"{c.what}: {c.message}"


def check_forward(info: OpInfo, sample: SampleInput) -> list[Comparison]:
    """Forward outputs of jaxops vs torch, one comparison per output leaf."""
    tol = sample.fwd_tol or info.fwd_tol
    ours = leaves(call_jax(info, sample))
    theirs = leaves(call_torch(info, sample)[0])
    if len(ours) != len(theirs):
        return [Comparison("output", False, message=f"{len(ours)} outputs vs torch {len(theirs)}")]
    return [compare(f"output[{i}]", o, t, tol) for i, (o, t) in enumerate(zip(ours, theirs))]


def _cotangent_leaf(rng: np.random.Generator, leaf: Any, carries: bool) -> Any:
    shape = np.shape(leaf)
    dtype = np.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
    if not jnp.issubdtype(dtype, jnp.inexact):
        return np.zeros(shape, dtype=jax.dtypes.float0)
    if not carries:
        return np.zeros(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@dataclasses.dataclass(frozen=True)
class Cotangent:
    """The random cotangent of one VJP, fed to jaxops and torch alike.

    Attributes:
        values: one NumPy array per non-``None`` output leaf (``float0`` for integer leaves).
        positions: each value's index among ``leaves(output)`` (``None`` leaves counted).
        carrying: the positions that carry a cotangent (``OpInfo.grad_outputs``); zeros elsewhere.
    """

    values: list[Any]
    positions: list[int]
    carrying: frozenset[int]


def jax_vjp(info: OpInfo, sample: SampleInput, seed: int = 0) -> tuple[list[Any], Cotangent]:
    """``jax.vjp`` of the op w.r.t. ``info.grad_refs(sample)`` with a random cotangent."""
    refs = info.grad_refs(sample)
    primals = [to_jax(sample.get(r)) for r in refs]
    out, vjp_fn = jax.vjp(bind(info, sample, refs), *primals)
    out_leaves, treedef = jax.tree_util.tree_flatten(out)
    # Index output leaves as `leaves()` does (None kept), so grad_outputs means the same on
    # both sides.
    positions = [i for i, leaf in enumerate(leaves(out)) if leaf is not None]
    carrying = frozenset(
        range(len(leaves(out))) if info.grad_outputs is None else info.grad_outputs
    )
    rng = np.random.default_rng(seed)
    cots = [_cotangent_leaf(rng, leaf, pos in carrying) for pos, leaf in zip(positions, out_leaves)]
    jax_cots = [c if c.dtype == jax.dtypes.float0 else jnp.asarray(c) for c in cots]
    grads = vjp_fn(jax.tree_util.tree_unflatten(treedef, jax_cots))
    return list(grads), Cotangent(cots, positions, carrying)


def torch_vjp(info: OpInfo, sample: SampleInput, cot: Cotangent) -> list[Any]:
    """``torch.autograd.grad`` of the reference w.r.t. ``info.grad_refs(sample)`` for ``cot``.

    The cotangent is cast to each torch output's dtype (a float64 run gets it exactly).
    """
    import torch

    t_out, t_inputs = call_torch(info, sample, requires_grad=info.grad_refs(sample))
    t_leaves = [leaf for leaf in leaves(t_out) if leaf is not None]
    pairs = [
        (t, to_torch(c).to(t.dtype))
        for pos, t, c in zip(cot.positions, t_leaves, cot.values)
        if pos in cot.carrying and t.requires_grad
    ]
    if pairs:
        theirs = torch.autograd.grad(
            [p[0] for p in pairs], t_inputs, [p[1] for p in pairs], allow_unused=True
        )
    else:
        theirs = [None] * len(t_inputs)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(theirs, t_inputs)]


def check_vjp(info: OpInfo, sample: SampleInput, seed: int = 0) -> list[Comparison]:
    """``jax.vjp`` vs ``torch.autograd.grad`` with the same random cotangent, per grad argument."""
    refs = info.grad_refs(sample)
    if not refs:
        return []
    tol = sample.grad_tol or info.grad_tol
    ours, cot = jax_vjp(info, sample, seed)
    theirs = torch_vjp(info, sample, cot)
    return [compare(f"grad[{r}]", o, t, tol) for r, o, t in zip(refs, ours, theirs)]
