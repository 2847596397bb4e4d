"""Parametrisation of the generic tests over the registry: one case per (op, sample)."""

from __future__ import annotations

import pytest

from jaxops.testing import REGISTRY


def sample_cases(check: str | None = None) -> list:
    """``pytest.param(info, sample)`` for every sample of every registered op.

    Samples that opt out of ``check`` are marked skipped with their stated reason.
    """
    cases = []
    for info in REGISTRY.values():
        for i, sample in enumerate(info.samples()):
            marks = []
            if check is not None and check in sample.skip:
                marks.append(pytest.mark.skip(reason=sample.skip[check]))
            cases.append(pytest.param(info, sample, id=f"{info.name}-{i}-{sample.name}", marks=marks))
    return cases


def error_cases() -> list:
    return [
        pytest.param(info, err, id=f"{info.name}-{i}-{err.error.__name__}")
        for info in REGISTRY.values()
        for i, err in enumerate(info.error_inputs())
    ]
