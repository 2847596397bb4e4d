"""Shared test configuration: hypothesis profiles and warnings."""

import os

import hypothesis

# "ci" keeps the property-based tests inside the suite's time budget; "long" is
# for manual fuzzing runs: pytest --hypothesis-profile=long -m slow tests/test_fuzz.py
hypothesis.settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True)
hypothesis.settings.register_profile("long", max_examples=2000, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
