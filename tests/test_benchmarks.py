"""``benchmarks/run.py`` end to end on two small ops: it runs and writes well-formed results.

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
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--op",
            "sigmoid",
            "--op",  # a scalar output: its torch cotangent must stay 0-d
            "mse_loss",
            "--reps",
            "2",
            "--min-time",
            "0",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc, out


def test_run_succeeds_and_prints_table(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("op "))
    for column in ("jaxops ms", "torch ms", "lax ms", "/torch", "compile s"):
        assert column in header
    for op in ("sigmoid", "mse_loss"):
        rows = [line for line in lines if line.startswith(op + " ")]
        assert len(rows) == 2 and any(" fwd+bwd " in row for row in rows), op


def test_json_is_well_formed(quick_run):
    _, out = quick_run
    data = json.loads((out / "bench-quick.json").read_text())
    machine = data["machine"]
    for key in ("cpu", "cores", "threads", "date", "jax", "jaxlib", "torch", "numpy"):
        assert machine[key], key
    assert data["settings"]["quick"] is True and sorted(data["settings"]["ops"]) == [
        "mse_loss",
        "sigmoid",
    ]
    results = data["results"]
    assert results and {r["op"] for r in results} == {"sigmoid", "mse_loss"}
    assert {(r["op"], r["mode"]) for r in results} == {
        (op, mode) for op in ("sigmoid", "mse_loss") for mode in ("fwd", "fwd+bwd")
    }
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


def _bench_module(name):
    import importlib

    bench = str(ROOT / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_rss_growth_sees_a_calls_memory():
    import numpy as np

    harness = _bench_module("harness")
    mib = 2**20
    big = harness.rss_growth(harness.Impl(lambda: np.ones(64 * mib // 8).sum()))
    small = harness.rss_growth(harness.Impl(lambda: np.ones(1024).sum()))
    if big is None:
        pytest.skip("this kernel does not let /proc reset the high-water mark")
    assert 63 * mib <= big <= 72 * mib  # the 64 MiB array, released before the next call
    assert small <= 4 * mib


def test_memory_and_parity_reach_the_table():
    run = _bench_module("run")
    impls = {
        name: {
            "median_ms": 2.0,
            "min_ms": 1.0,
            "max_ms": 3.0,
            "compile_s": 1.5,
            "peak_rss_mib": mib,
            "cold_compile": name != "torch",
            "xla_temp_mib": 9.0,
        }
        for name, mib in (("jaxops", 139.4), ("torch", 65.0), ("lax", 93.0))
    }
    record = {
        "op": "resnet18",
        "workload": "w",
        "mode": "fwd+bwd",
        "note": "",
        "error": None,
        "impls": impls,
        "ratio_torch": 1.0,
        "ratio_lax": 1.0,
        "parity": {
            "setting": "SiLU, float32",
            "results": {
                "jaxops vs torch": {
                    "loss": 1e-7,
                    "grads": 2e-5,
                    "grads_worst": "fc.weight",
                    "stats": 3e-6,
                }
            },
        },
    }
    cells = run.row_cells(record)
    assert len(cells) == len(run.HEADER) and cells[-1] == "139 / 65 / 93"
    lines = run.notes(record)
    assert "jaxops 1.5 s, lax 1.5 s" in lines[0] and "torch" not in lines[0]
    assert "grads 2.0e-05 (fc.weight), stats 3.0e-06" in lines[1]
    md = run.markdown_table(
        [record],
        {"date": "2026-01-01", "cpu": "x", "threads": 2, "jax": "0", "torch": "0", "numpy": "0"},
        {},
    )
    assert "| 139 / 65 / 93 |" in md and "- resnet18 w: parity (SiLU, float32)" in md
    plain = dict(record, parity=None, impls={"jaxops": dict(impls["jaxops"], cold_compile=False)})
    del plain["impls"]["jaxops"]["peak_rss_mib"]
    assert run.row_cells(plain)[-1] == "-" and run.notes(plain) == []
