"""The GPU check: jaxops on an NVIDIA GPU against torch on CUDA, in one command.

    benchmarks/gpu_check.sh            # on the GPU machine (jax[cuda], torch+CUDA, torchvision)
    benchmarks/gpu_check.sh --dry-run  # anywhere: the same steps on CPU at tiny sizes

Steps, each reported as it finishes (about 6-8 minutes on one H200, compiles included):

1. **Parity on the GPU**: the registry's samples (a few per op) through jaxops
   on the GPU and torch on CUDA with TF32 off, forward and VJP (what
   ``python -m jaxops`` prints on CPU).
2. **Determinism**: max_pool2d's gradient (scatter-free by construction) computed
   twice on a tie-heavy batch must be bitwise equal; roi_pool's gradient
   (a scatter-add where RoIs overlap) twice, with and without
   ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``, reported.
3. **RoI bin edges under XLA:GPU's division** (not correctly rounded, openxla/xla#37181):
   roi_pool and roi_align at .5 box coordinates and non-integer ``spatial_scale``
   against torchvision on CPU (the exact reference) and on CUDA.
4. **Benchmarks** at the suite's full shapes (``benchmarks/run.py --device gpu``),
   forward and forward+backward, to ``benchmarks/results/bench-gpu.{md,json,png}``.

Results go to ``--out`` (default ``benchmarks/results``): ``gpu-check.md`` holds
steps 1-3, the benchmark files step 4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxops  # noqa: E402


def _log(lines: list[str], text: str = "") -> None:
    print(text, flush=True)
    lines.append(text)


def parity_on_device(lines: list[str], configs: int, device: str, ops: list[str] | None) -> bool:
    """Step 1: the parity table with jaxops on JAX's default device, torch on ``device``."""
    from jaxops import report
    from jaxops.testing import REGISTRY, parity

    start = time.perf_counter()
    with parity.torch_device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [report.check_op(name, configs) for name in ops or REGISTRY]
    _log(lines, f"## 1. Parity: jaxops on {jax.default_backend()}, torch on {device}\n")
    _log(lines, report.format_markdown(rows))
    _log(
        lines,
        f"\n{sum(r.configs for r in rows)} configurations in {time.perf_counter() - start:.0f} s.",
    )
    for r in rows:
        for failure in r.failures[:3]:
            _log(lines, f"- {r.name}: {failure}")
    return not any(r.failures for r in rows)


def _pool_grad(x):
    return jax.jit(
        jax.grad(lambda x: jnp.sum(jnp.sin(jaxops.max_pool2d(x, 3, stride=2, padding=1))))
    )(x)


def _roi_grad(x, boxes):
    def loss(x):
        return jnp.sum(jnp.sin(jaxops.roi_pool(x, boxes, 7, spatial_scale=1 / 16)))

    return jax.jit(jax.grad(loss))(x)


def _roi_inputs(shape, k, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.integers(0, 4, shape).astype(np.float32))  # ties: argmax contention
    n, _, h, w = shape
    xy = rng.uniform(0, 12 * min(h, w), (k, 2))  # heavily overlapping boxes, in 1/16-scale units
    boxes = np.concatenate(
        [rng.integers(0, n, (k, 1)), xy, xy + rng.uniform(16, 6 * min(h, w), (k, 2))], 1
    ).astype(np.float32)
    return x, jnp.asarray(boxes)


def determinism(lines: list[str], dry: bool) -> bool:
    """Step 2: max_pool2d's gradient bitwise reproducible; roi_pool's reported."""
    _log(lines, "\n## 2. Determinism\n")
    rng = np.random.default_rng(0)
    shape = (2, 4, 16, 16) if dry else (32, 64, 112, 112)
    x = jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))  # many ties
    a, b = _pool_grad(x), _pool_grad(x)
    same = bool(jnp.array_equal(a, b))
    _log(
        lines, f"- max_pool2d k3 s2 p1 {shape}, tie-heavy: gradient twice bitwise equal: **{same}**"
    )
    roi_shape, k = ((1, 4, 12, 12), 16) if dry else ((2, 256, 50, 50), 512)
    xr, boxes = _roi_inputs(roi_shape, k)
    r1, r2 = _roi_grad(xr, boxes), _roi_grad(xr, boxes)
    _log(
        lines,
        f"- roi_pool {roi_shape} K={k}, overlapping RoIs: gradient twice bitwise equal: "
        f"{bool(jnp.array_equal(r1, r2))} (max difference {float(jnp.max(jnp.abs(r1 - r2))):.2e})",
    )
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_deterministic_ops" not in flags:
        env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_gpu_deterministic_ops=true".strip())
        cmd = [sys.executable, __file__, "--roi-determinism-only"] + (["--dry-run"] if dry else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        result = (
            proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else proc.stderr[-500:]
        )
        _log(lines, f"- the same with `--xla_gpu_deterministic_ops=true`: {result}")
    return same


def _roi_determinism_only(dry: bool) -> None:
    roi_shape, k = ((1, 4, 12, 12), 16) if dry else ((2, 256, 50, 50), 512)
    xr, boxes = _roi_inputs(roi_shape, k)
    r1, r2 = _roi_grad(xr, boxes), _roi_grad(xr, boxes)
    print(f"bitwise equal: {bool(jnp.array_equal(r1, r2))}")


def roi_division(lines: list[str], device: str) -> None:
    """Step 3: RoI outputs where bin edges hinge on correctly rounded float32 division."""
    import torch
    import torchvision

    from jaxops.testing import REGISTRY

    _log(lines, "\n## 3. RoI bin edges under the device's float32 division\n")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 37, 41)).astype(np.float32)
    corners = rng.integers(0, 60, (64, 4)) + 0.5  # .5 coordinates
    corners[:, 2:] += corners[:, :2]
    boxes = np.concatenate([rng.integers(0, 2, (64, 1)), corners], 1).astype(np.float32)
    _log(lines, "Outputs off by more than the op's float32 tolerance mean a bin edge moved.\n")
    _log(
        lines,
        "| op | spatial_scale | vs torchvision CPU: max abs err (outputs beyond tolerance) "
        "| vs torchvision on device: max abs err |",
    )
    _log(lines, "|---|---:|---:|---:|")
    for scale in (0.5, 1 / 3, 0.3, 1 / 16, 0.7):
        for name in ("roi_pool", "roi_align"):
            kw = {"sampling_ratio": -1, "aligned": True} if name == "roi_align" else {}
            ours = np.asarray(getattr(jaxops, name)(x, boxes, 5, spatial_scale=scale, **kw))
            ref = getattr(torchvision.ops, name)
            cpu = ref(
                torch.from_numpy(x), torch.from_numpy(boxes), 5, spatial_scale=scale, **kw
            ).numpy()
            dev = (
                ref(
                    torch.from_numpy(x).to(device),
                    torch.from_numpy(boxes).to(device),
                    5,
                    spatial_scale=scale,
                    **kw,
                )
                .cpu()
                .numpy()
            )
            err_cpu = np.abs(ours - cpu)
            tol = REGISTRY[name].fwd_tol
            beyond = int(np.sum(err_cpu > tol.atol + tol.rtol * np.abs(cpu)))
            _log(
                lines,
                f"| {name} | {scale:.4g} | {err_cpu.max():.2e} ({beyond}) "
                f"| {np.abs(ours - dev).max():.2e} |",
            )


def benchmarks(dry: bool, out: Path) -> int:
    """Step 4: benchmarks/run.py on the device (tiny shapes and one repetition for a dry run)."""
    import run

    args = ["--out", str(out), "--no-progress"]
    if dry:
        # Two cases are enough to see the device plumbing work (the suite's time matters);
        # tests/test_benchmarks.py and tests/test_models.py run the workloads themselves.
        args += [
            "--quick",
            "--reps",
            "1",
            "--min-time",
            "0",
            "--mode",
            "fwd",
            "--name",
            "bench-dry-run",
            "--op",
            "conv2d",
            "--op",
            "roi_head",
        ]
    else:
        args += ["--device", "gpu", "--reps", "7", "--min-time", "0.3"]
    return run.main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="on CPU, tiny sizes: check the script works"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--configs", type=int, help="samples per op in the parity step (default 4; dry run 1)"
    )
    parser.add_argument(
        "--parity-op",
        action="append",
        metavar="NAME",
        help="parity step for this op only (repeatable; default every op, dry run three)",
    )
    parser.add_argument("--roi-determinism-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.roi_determinism_only:
        _roi_determinism_only(args.dry_run)
        return 0
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and jax.default_backend() != "gpu":
        parser.error(f"no GPU: JAX's default backend is {jax.default_backend()} (use --dry-run)")
    if device == "cuda":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    lines = [
        f"# GPU check{' (dry run on CPU)' if args.dry_run else ''}\n",
        f"{jax.devices()[0].device_kind}; jax {jax.__version__}; "
        f"{json.dumps({k: v for k, v in os.environ.items() if k.startswith('XLA_')})}\n",
    ]
    ops = args.parity_op or (["conv2d", "max_pool2d", "roi_align"] if args.dry_run else None)
    ok = parity_on_device(lines, args.configs or (1 if args.dry_run else 4), device, ops)
    ok &= determinism(lines, args.dry_run)
    roi_division(lines, device)
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / ("gpu-check-dry-run.md" if args.dry_run else "gpu-check.md")
    report.write_text("\n".join(lines) + "\n")
    print(f"\nSteps 1-3 in {time.perf_counter() - start:.0f} s; wrote {report}\n", flush=True)
    code = benchmarks(args.dry_run, args.out)
    print(f"\nGPU check finished in {time.perf_counter() - start:.0f} s.")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
