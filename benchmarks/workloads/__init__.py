"""Benchmark workloads, one module per op family; each exposes
``cases(quick: bool) -> list[Case]``."""
