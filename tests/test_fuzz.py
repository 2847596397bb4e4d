"""Property-based parity with torch: forward and VJP on configurations drawn by each op's strategy.

Every registered op supplies ``OpInfo.strategy`` (a zero-argument function
returning a hypothesis strategy of valid ``SampleInput``s); an op without one
fails ``tests/test_registry_coverage.py``. The number of examples comes from
the hypothesis profile (``tests/conftest.py``): "ci" in the normal run, "long"
for manual fuzzing (``HYPOTHESIS_PROFILE=long``). A counterexample becomes a
named regression sample in the op's ``sample_inputs``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings

from jaxops.testing import REGISTRY, parity


def describe(sample) -> str:
    """The sample with its array values, enough to rebuild it as a regression sample."""
    lines = [repr(sample)]
    with np.printoptions(threshold=200, precision=9, floatmode="maxprec"):
        for i, a in enumerate(sample.arrays()):
            values = np.array2string(a, separator=", ")
            lines.append(f"  array {i}: {a.dtype}{list(a.shape)} = {values}")
    return "\n".join(lines)


def check(info, sample) -> list[str]:
    """Forward and VJP comparisons with torch that fail, as readable lines."""
    comparisons = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "forward" not in sample.skip:
            comparisons += parity.check_forward(info, sample)
        if "vjp" not in sample.skip and info.grad_refs(sample):
            comparisons += parity.check_vjp(info, sample)
    return [f"{c.what}: {c.message}" for c in comparisons if not c.ok]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_fuzz_matches_torch(name):
    info = REGISTRY[name]
    if info.strategy is None:
        pytest.skip(f"{name} has no strategy: tests/test_registry_coverage.py fails for it")

    tried = []

    @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sample=info.strategy())
    def fuzz(sample):
        tried.append(sample.name)
        note(describe(sample))
        failures = check(info, sample)
        assert not failures, "\n".join(failures)

    try:
        fuzz()
    finally:  # shown with -s: the numbers of the fuzzing runs' reports
        distinct = len(set(tried))
        print(f"\n[fuzz] {name}: {len(tried)} configurations tried ({distinct} distinct names)")
