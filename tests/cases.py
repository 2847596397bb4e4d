"""Parametrisation of the generic tests over the registry: one case per (op, sample)."""

from __future__ import annotations

import functools

import pytest

from jaxops.testing import REGISTRY, lowering, parity

# Cases of ops that choose their formulation per platform run a second time under
# jaxops.testing.portable() (tests/conftest.py enters it for this mark), so CPU CI
# checks the formulation GPU and TPU run too.
PORTABLE = pytest.mark.portable


@functools.cache
def differs_by_platform(name: str) -> bool:
    """Whether op ``name`` stages out a per-platform formulation (forward or derivative)."""
    import jax

    info = REGISTRY[name]
    for sample in info.samples():
        refs = info.grad_refs(sample)
        primals = [parity.to_jax(sample.get(r)) for r in refs]
        f = parity.bind(info, sample, refs)
        try:
            if lowering.has_platform_branches(lambda *p, f=f: jax.jvp(f, p, p), *primals):
                return True
        except Exception:  # a sample this trace cannot take (e.g. integer-only): try the next
            continue
    return False


def with_portable(cases: list, per_op: int | None = None) -> list:
    """``cases``, plus a copy marked ``portable`` of the cases whose op differs by platform.

    ``per_op`` limits the copies to that many cases per op (the first ones): the
    transformation and dtype checks of a formulation need a few samples, not all
    (the parity tests copy every case).
    """
    out = list(cases)
    copied: dict[str, int] = {}
    for case in cases:
        info = case.values[0]
        if not differs_by_platform(info.name):
            continue
        if per_op is not None and copied.get(info.name, 0) >= per_op:
            continue
        copied[info.name] = copied.get(info.name, 0) + 1
        out.append(
            pytest.param(*case.values, id=f"{case.id}-portable", marks=[*case.marks, PORTABLE])
        )
    return out


# Portable copies per op in the checks that choose a few samples per op.
PORTABLE_PER_OP = 2


def _marks(check: str | None, sample) -> list:
    """A sample's opt-out of ``check`` (skipped) or declared deviation in it (strict xfail)."""
    marks = []
    if check is not None and check in sample.skip:
        marks.append(pytest.mark.skip(reason=sample.skip[check]))
    if check is not None and check in sample.xfail:
        marks.append(
            pytest.mark.xfail(reason=sample.xfail[check], raises=AssertionError, strict=True)
        )
    return marks


def sample_cases(
    check: str | None = None, per_op: int | None = None, portable: bool = True
) -> list:
    """``pytest.param(info, sample)`` for every sample of every registered op.

    Samples that opt out of ``check`` are marked skipped with their stated reason;
    those declaring a deviation in it (``SampleInput.xfail``) are strict expected failures.
    ``per_op`` keeps that many samples of each op, evenly spread over its list
    (corners first, random configurations last), for the costlier checks.
    ``portable`` adds each case once more under ``jaxops.testing.portable()`` for
    ops whose formulation differs by platform (all of them without ``per_op``,
    else ``PORTABLE_PER_OP`` per op).
    """
    cases = []
    for info in REGISTRY.values():
        samples = list(enumerate(info.samples()))
        if per_op is not None and len(samples) > per_op:
            step = len(samples) / per_op
            samples = [samples[int(k * step)] for k in range(per_op)]
        for i, sample in samples:
            cases.append(
                pytest.param(
                    info, sample, id=f"{info.name}-{i}-{sample.name}", marks=_marks(check, sample)
                )
            )
    # Every case is copied for the full parity run; for the sampled checks, a few.
    per = None if per_op is None else PORTABLE_PER_OP
    return with_portable(cases, per) if portable else cases


def error_cases() -> list:
    return [
        pytest.param(info, err, id=f"{info.name}-{i}-{err.error.__name__}")
        for info in REGISTRY.values()
        for i, err in enumerate(info.error_inputs())
    ]


def _small_enough(info, sample, max_numel: int) -> bool:
    """A float32, all-finite sample with differentiable inputs of at most ``max_numel`` elements."""
    import numpy as np

    from jaxops.testing import is_floating

    refs = info.grad_refs(sample)
    if not refs or not sample.all_finite():
        return False
    if any(is_floating(a.dtype) and a.dtype != np.float32 for a in sample.arrays()):
        return False  # half-precision samples have their own checks
    numel = sum(int(np.size(sample.get(r))) for r in refs)
    return 0 < numel <= max_numel


def small_cases(
    check: str,
    per_op: int = 3,
    max_numel: int = 64,
    skip_also: tuple[str, ...] = (),
    portable: bool = True,
) -> list:
    """The first ``per_op`` small, finite, float32 samples of every op with a differentiable input.

    For the expensive checks (Jacobians, Hessian-vector products, export, dtypes):
    they run on a few samples per op rather than all of them. Samples opting out of
    ``check`` (or of any of ``skip_also``) are not chosen; those declaring a deviation
    in ``check`` are strict expected failures.
    """
    cases = []
    for info in REGISTRY.values():
        chosen = 0
        for i, sample in enumerate(info.samples()):
            if chosen == per_op:
                break
            if any(c in sample.skip for c in (check, *skip_also)):
                continue
            if not _small_enough(info, sample, max_numel):
                continue
            chosen += 1
            cases.append(
                pytest.param(
                    info, sample, id=f"{info.name}-{i}-{sample.name}", marks=_marks(check, sample)
                )
            )
    return with_portable(cases, PORTABLE_PER_OP) if portable else cases


def batch_cases(check: str, per_op: int = 2, max_numel: int = 512, portable: bool = True) -> list:
    """Small, finite float32 samples with a batch axis N (``OpInfo.batch_args``), ``per_op``
    per op."""
    cases = []
    for info in REGISTRY.values():
        chosen = 0
        for i, sample in enumerate(info.samples()):
            if chosen < per_op and check not in sample.skip and info.batch_refs(sample):
                if _small_enough(info, sample, max_numel):
                    chosen += 1
                    cases.append(
                        pytest.param(
                            info,
                            sample,
                            id=f"{info.name}-{i}-{sample.name}",
                            marks=_marks(check, sample),
                        )
                    )
    return with_portable(cases, PORTABLE_PER_OP) if portable else cases
