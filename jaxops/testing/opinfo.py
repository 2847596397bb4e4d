"""The parity registry's vocabulary, after PyTorch's OpInfo.

An :class:`OpInfo` says everything the generic checks need to know about one
op: the jaxops function, its torch reference, a generator of sample inputs
(enumerated corners plus seeded random configurations), error inputs,
data-dependent errors, which arguments are differentiable or batched, declared
deviations and the tolerances. Tests and ``python -m jaxops`` read only this
registry, so a new op joins every check by adding one entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

# A differentiable argument: a position in ``args`` or a keyword name.
ArgRef = int | str


def is_floating(dtype: Any) -> bool:
    """True for NumPy floating dtypes, ml_dtypes' bfloat16 included."""
    return bool(jnp.issubdtype(dtype, jnp.floating))


@dataclasses.dataclass(frozen=True)
class Tol:
    """Absolute and relative tolerance of one comparison (``|a-b| <= atol + rtol*|b|``)."""

    rtol: float
    atol: float


@dataclasses.dataclass(frozen=True)
class SampleInput:
    """One call of an op: NumPy arrays and plain Python arguments, fed to jaxops and torch alike.

    Attributes:
        args: positional arguments (NumPy arrays, lists of arrays, or plain values).
        kwargs: keyword arguments.
        name: short description used in test ids and reports.
        grad_args: differentiable arguments for this sample; ``None`` takes the
            op's default (those of ``OpInfo.grad_args`` that are floating arrays).
        fwd_tol, grad_tol: per-sample overrides of the op's tolerances, with the
            reason in the sample's name or a comment where they are built.
        skip: checks this sample opts out of, mapped to the reason, e.g.
            ``{"vjp": "torch's gradient at a tie is ..."}``. Check names:
            ``forward``, ``vjp``, ``jit``, ``vmap``, ``jvp``.
        xfail: checks this sample is expected to fail (an assertion, strictly:
            once it passes the entry must go), mapped to the documented deviation,
            e.g. ``{"hvp": "the gradient at repeated indices is torch's, ..."}``.
            Any check name that ``tests/cases.py`` selects samples for.
    """

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str = ""
    grad_args: tuple[ArgRef, ...] | None = None
    fwd_tol: Tol | None = None
    grad_tol: Tol | None = None
    skip: Mapping[str, str] = dataclasses.field(default_factory=dict)
    xfail: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def get(self, ref: ArgRef) -> Any:
        return self.args[ref] if isinstance(ref, int) else self.kwargs.get(ref)

    def ndim(self, ref: ArgRef) -> int:
        """The number of dimensions of argument ``ref``; -1 when it is not a NumPy array (or
        absent)."""
        value = self.get(ref)
        return np.ndim(value) if isinstance(value, np.ndarray) else -1

    def replace(self, ref: ArgRef, value: Any) -> SampleInput:
        """A copy with argument ``ref`` set to ``value``."""
        if isinstance(ref, int):
            args = self.args[:ref] + (value,) + self.args[ref + 1 :]
            return dataclasses.replace(self, args=args)
        return dataclasses.replace(self, kwargs={**self.kwargs, ref: value})

    def arrays(self) -> list[np.ndarray]:
        """Every NumPy array among the arguments (inside lists too)."""
        found: list[np.ndarray] = []

        def visit(value: Any) -> None:
            if isinstance(value, np.ndarray):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    visit(v)

        for value in (*self.args, *self.kwargs.values()):
            visit(value)
        return found

    def all_finite(self) -> bool:
        return all(np.isfinite(a).all() for a in self.arrays() if is_floating(a.dtype))

    def __repr__(self) -> str:
        def show(v: Any) -> str:
            if isinstance(v, np.ndarray):
                return f"{v.dtype}{list(v.shape)}"
            if isinstance(v, list):
                return "[" + ", ".join(show(x) for x in v) + "]"
            return repr(v)

        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclasses.dataclass(frozen=True)
class ErrorInput:
    """A bad call and the exception jaxops must raise for it at trace time."""

    sample: SampleInput
    error: type[Exception]
    match: str  # regular expression searched in the message


@dataclasses.dataclass(frozen=True)
class Lowering:
    """What the op's portable formulation may contain once lowered for GPU or TPU.

    Every program (forward, and the VJP) must be free of ``while`` loops and of
    branches on the data, with every contraction at ``Precision.HIGHEST`` by
    default (see ``tests/test_platforms.py``).

    Attributes:
        scatter: programs (``"fwd"``, ``"grad"``) allowed to scatter, mapped to why
            a scatter is the op's definition there.
        convolution: each program must contain an XLA convolution (cuDNN's and
            the TPU's convolution unit then do the work).
    """

    scatter: Mapping[str, str] = dataclasses.field(default_factory=dict)
    convolution: bool = False


@dataclasses.dataclass(frozen=True)
class DataError:
    """A data-dependent error: raised only under ``jaxops.checked``; unchecked, a documented result.

    Non-array positional arguments of the calls are static under ``jit`` in the checks.

    Attributes:
        bad: a call with invalid values (e.g. a class index out of range).
        good: a call with valid values, where checked and unchecked results agree.
        match: regular expression the checked error's message must match, from
            its start (``^jaxops\\.<op>: ...``) and naming the offending value.
        unchecked: predicate on the unchecked result of ``bad`` (a NumPy array):
            the behaviour the op's docstring documents (e.g. NaN for that element).
        finite_grad: whether, unchecked, the gradient of ``nansum(op(bad))`` w.r.t.
            the first argument is finite (``False`` where the documented result
            poisons it, with the reason in a comment).
    """

    bad: SampleInput
    good: SampleInput
    match: str
    unchecked: Callable[[np.ndarray], bool]
    finite_grad: bool = True


def no_batch_axis(sample: SampleInput) -> tuple[ArgRef, ...]:
    """``OpInfo.batch_args`` of an op that has no batch axis of its own."""
    return ()


# The checks an op may declare a dtype deviation for (``OpInfo.dtype_deviations``):
# ``mixed_dtypes``, it raises ``TypeError`` for a mix of floating dtypes instead of
# following JAX's type promotion; ``half_gradients``, its backward pass still sums
# in half precision (tests/test_dtypes.py).
DTYPE_CHECKS = ("mixed_dtypes", "half_gradients")


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """Everything the generic checks need to know about one op.

    Attributes:
        name: the public name, ``jaxops.<name>``.
        op: the jaxops function.
        ref: the torch reference; called with the sample's arguments, arrays
            converted to tensors, and returning a tensor or a tuple of them.
        sample_inputs: ``rng -> iterable of SampleInput``; deterministic given the rng.
        formula: one line for the parity report.
        error_inputs: ``() -> iterable of ErrorInput``.
        data_errors: the op's data-dependent errors (``jaxops._checks.data_check``),
            one :class:`DataError` each; tests/test_checked.py runs every one.
        grad_args: default differentiable arguments (positions or keyword names).
        grad_outputs: indices of the output leaves that carry cotangents in the
            VJP checks (``None``: every floating leaf). torch's non-differentiable
            outputs, such as updated running statistics, are left out here.
        vmap_args: arguments batched in the vmap check (``None``: the grad args).
        batch_args: ``sample -> arguments`` whose leading axis is the op's own
            batch axis N in that sample (``()`` where it has none, e.g. an
            unbatched CHW input); used for symbolic batch sizes (export) and batch
            sharding. ``None`` until declared; :func:`no_batch_axis` declares an
            op without one.
        dtype_deviations: checks of :data:`DTYPE_CHECKS` where the op deviates
            from the project's dtype rules, mapped to the reason: expected
            (strict) failures of those checks.
        fwd_tol, grad_tol: default tolerances of the torch comparisons.
        torch_module: where the reference lives, for the report.
        strategy: optional ``() -> hypothesis strategy of SampleInput`` used by
            the property-based fuzz tests.
        lowering: what the portable formulation may contain on GPU/TPU.
    """

    name: str
    op: Callable[..., Any]
    ref: Callable[..., Any]
    sample_inputs: Callable[[np.random.Generator], Iterable[SampleInput]]
    formula: str
    error_inputs: Callable[[], Iterable[ErrorInput]] = lambda: ()
    data_errors: tuple[DataError, ...] = ()
    grad_args: tuple[ArgRef, ...] = (0,)
    grad_outputs: tuple[int, ...] | None = None
    vmap_args: tuple[ArgRef, ...] | None = None
    batch_args: Callable[[SampleInput], tuple[ArgRef, ...]] | None = None
    dtype_deviations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fwd_tol: Tol = Tol(1e-5, 1e-6)
    grad_tol: Tol = Tol(1e-5, 1e-6)
    torch_name: str = ""
    strategy: Callable[[], Any] | None = None
    lowering: Lowering = Lowering()

    def samples(self) -> list[SampleInput]:
        """The op's samples, generated from a seed derived from its name (stable across runs)."""
        seed = int.from_bytes(self.name.encode(), "little") % (2**32)
        return list(self.sample_inputs(np.random.default_rng(seed)))

    def grad_refs(self, sample: SampleInput) -> tuple[ArgRef, ...]:
        """The differentiable arguments of ``sample`` that are floating arrays."""
        refs = self.grad_args if sample.grad_args is None else sample.grad_args
        return tuple(
            r
            for r in refs
            if isinstance(sample.get(r), np.ndarray) and is_floating(sample.get(r).dtype)
        )

    def vmap_refs(self, sample: SampleInput) -> tuple[ArgRef, ...]:
        refs = self.grad_refs(sample) if self.vmap_args is None else self.vmap_args
        return tuple(r for r in refs if isinstance(sample.get(r), np.ndarray))

    def batch_refs(self, sample: SampleInput) -> tuple[ArgRef, ...]:
        """The arguments of ``sample`` whose leading axis is the op's batch axis N.

        Empty when the op or the sample has no batch axis, or the batch is empty.
        """
        refs = () if self.batch_args is None else tuple(self.batch_args(sample))
        if refs and np.shape(sample.get(refs[0]))[0] == 0:
            return ()
        return refs
