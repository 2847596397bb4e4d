"""Shared test configuration: hypothesis profiles and warnings."""

import os

import hypothesis
import pytest

from jaxops.testing import portable

# "ci" keeps the property-based tests (tests/test_fuzz.py) inside the suite's
# time budget: few examples, derandomized so every run checks the same ones.
# "long" is for manual fuzzing runs, about a minute per op on one core:
#   HYPOTHESIS_PROFILE=long pytest -n0 tests/test_fuzz.py --hypothesis-show-statistics
# (JAXOPS_FUZZ_EXAMPLES overrides its example count; failures are replayed
# from the local .hypothesis/ database on the next run.)
hypothesis.settings.register_profile(
    "ci", max_examples=10, deadline=None, derandomize=True, database=None, print_blob=True
)
hypothesis.settings.register_profile(
    "long",
    max_examples=int(os.environ.get("JAXOPS_FUZZ_EXAMPLES", "200")),
    deadline=None,
    print_blob=True,
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _formulation(request):
    """Cases marked ``portable`` (see tests/cases.py) run under ``jaxops.testing.portable()``."""
    if request.node.get_closest_marker("portable") is None:
        yield
        return
    with portable():
        yield
