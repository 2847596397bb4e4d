"""``benchmarks/run.py`` end to end on one small op: it runs and writes well-formed results.

No timing is asserted here (the machine running the tests may be busy); only
that the table, the JSON, the Markdown and the PNG chart are produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("benchmarks")  # one worker runs the script once for all tests


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--op", "sigmoid",
         "--reps", "2", "--min-time", "0", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    return proc, out


def test_run_succeeds_and_prints_table(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("op "))
    for column in ("jaxops ms", "torch ms", "lax ms", "/torch", "compile s"):
        assert column in header
    rows = [line for line in lines if line.startswith("sigmoid ")]
    assert len(rows) == 2 and any(" fwd+bwd " in row for row in rows)


def test_json_is_well_formed(quick_run):
    _, out = quick_run
    data = json.loads((out / "bench-quick.json").read_text())
    machine = data["machine"]
    for key in ("cpu", "cores", "threads", "date", "jax", "jaxlib", "torch", "numpy"):
        assert machine[key], key
    assert data["settings"]["quick"] is True and data["settings"]["ops"] == ["sigmoid"]
    results = data["results"]
    assert results and {r["op"] for r in results} == {"sigmoid"}
    assert {r["mode"] for r in results} == {"fwd", "fwd+bwd"}
    for r in results:
        assert r["error"] is None
        assert {"jaxops", "torch"} <= set(r["impls"])
        for s in r["impls"].values():
            assert 0 < s["min_ms"] <= s["median_ms"] <= s["max_ms"]
            assert s["reps"] >= 2 and s["compile_s"] >= 0
        assert r["ratio_torch"] == pytest.approx(
            r["impls"]["jaxops"]["median_ms"] / r["impls"]["torch"]["median_ms"]
        )
    fwd = next(r for r in results if r["mode"] == "fwd")
    assert "lax" in fwd["impls"] and fwd["ratio_lax"] > 0


def test_chart_and_markdown(quick_run):
    _, out = quick_run
    import matplotlib.image

    png = out / "bench-quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 400 and height > 100
    md = (out / "bench-quick.md").read_text().splitlines()
    table = [line for line in md if line.startswith("| sigmoid")]
    assert len(table) == 2 and all(line.count("|") == md[2].count("|") for line in table)
