"""``benchmarks/gpu_check.sh --dry-run``: the GPU check's every step runs, on CPU at tiny sizes.

So the script is known to work before a GPU machine is lent; what it measures
there is not asserted here (no device), only that each step reports.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("benchmarks")


def test_gpu_check_dry_run(tmp_path):
    proc = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = (tmp_path / "gpu-check-dry-run.md").read_text()
    for section in ("## 1. Parity", "## 2. Determinism", "## 3. RoI bin edges"):
        assert section in report, report
    assert "| `conv2d` |" in report and "FAIL" not in report, report
    assert "gradient twice bitwise equal: **True**" in report, report
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"bench-dry-run.{suffix}").stat().st_size > 0
