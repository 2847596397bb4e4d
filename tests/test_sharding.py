"""Runs ``multidevice_checks.py`` in its own process on 8 CPU devices.

The number of host devices is fixed when JAX initialises, and this process (or
its pytest-xdist worker) already did so with one; hence a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def test_ops_on_eight_device_mesh():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / "multidevice_checks.py"),
        "-n0",
        "-q",
        "-rfEs",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::UserWarning",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = result.stdout[-20000:] + result.stderr[-5000:]
    assert result.returncode == 0, (
        f"multi-device checks failed (exit {result.returncode}):\n{report}"
    )
    print(report)
