"""Timing method shared by every benchmark.

- Inputs are prepared before timing; each implementation is a zero-argument
  callable that returns only once its result is ready (``block_until_ready``
  for JAX, torch's CPU ops are synchronous).
- JAX functions are compiled ahead of time (``jit(...).lower(...).compile()``);
  the compile time is reported separately and never enters a timing.
- Every implementation is called once untimed (warm-up), then repetitions are
  interleaved across implementations (A B C A B C ...), so drifting machine
  load affects all of them alike; we report the median with min and max.
- torch runs with the same number of threads as XLA's CPU client gets (all
  cores this process may use).

- Memory (cases with ``Case.memory``): :func:`rss_growth`, the peak resident
  memory one call adds to the process, for every implementation alike.

A workload module (``benchmarks/workloads/<family>.py``) exposes
``cases(quick: bool) -> list[Case]``. Build large inputs inside ``Case.make``
(called just before the case is timed, and released after), not in ``cases``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass
class Impl:
    """One way of computing a workload: a ready-to-time callable and its compile time.

    Attributes:
        run: computes the workload once and returns when the result is ready.
        compile_s: lower + compile time (JAX), 0 for eager torch.
        info: further facts for the JSON record (XLA's memory analysis, peak memory).
        reset: optional; drops state the previous ``run`` left behind that the
            next one replaces (torch's ``.grad``), before memory is measured.
    """

    run: Callable[[], Any]
    compile_s: float = 0.0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    reset: Callable[[], None] | None = None


@dataclasses.dataclass
class Case:
    """One workload of one op in one mode, with its implementations.

    Attributes:
        op: the jaxops op name (what ``run.py --op`` selects).
        workload: a short description of the shapes and arguments.
        mode: ``"fwd"`` or ``"fwd+bwd"``.
        make: builds inputs and compiles, outside the timer; returns the
            implementations keyed ``"jaxops"``, ``"torch"`` and, where it
            applies, ``"lax"`` (the bare primitive jaxops builds on).
        flops: optional floating-point operation count of one call, for GFLOP/s.
        note: optional remark shown in the JSON results.
        memory: also measure each implementation's :func:`rss_growth` (one more
            call each, before the timing).
        parity: optional check run after the timing (inputs released); returns
            a JSON-able dict, recorded as the case's ``"parity"``.
    """

    op: str
    workload: str
    mode: str  # "fwd" or "fwd+bwd"
    make: Callable[[], dict[str, Impl]]
    flops: float | None = None
    note: str = ""
    memory: bool = False
    parity: Callable[[], dict[str, Any]] | None = None


@dataclasses.dataclass
class Stats:
    """Wall-clock statistics of one implementation over the timed repetitions."""

    median_s: float
    min_s: float
    max_s: float
    compile_s: float
    reps: int = 0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_ms": self.median_s * 1e3,
            "min_ms": self.min_s * 1e3,
            "max_ms": self.max_s * 1e3,
            "compile_s": self.compile_s,
            "reps": self.reps,
            **self.info,
        }


def threads() -> int:
    """CPU cores this process may run on (what XLA's CPU client uses, and what torch is given)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def limit_threads(n: int) -> None:
    """Pins this process to ``n`` of its cores, so XLA and torch both use ``n`` threads.

    Call it before JAX creates its CPU client (the first array or computation):
    XLA sizes its thread pool from the cores the process may run on.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if not 1 <= n <= len(allowed):
        raise ValueError(f"threads must be between 1 and {len(allowed)}, got {n}")
    os.sched_setaffinity(0, allowed[:n])


def setup_torch() -> None:
    import torch

    torch.set_num_threads(threads())


_TORCH_DEVICE = "cpu"


def use_torch_device(device: str) -> None:
    """Runs the torch implementations on ``device`` (``"cpu"`` or ``"cuda"``).

    On CUDA, TF32 is switched off for matmuls and cuDNN convolutions, so torch
    computes float32 as jaxops' default precision does; calls are synchronised.
    """
    global _TORCH_DEVICE
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    _TORCH_DEVICE = device


def torch_device() -> str:
    """The device the torch implementations run on (see :func:`use_torch_device`)."""
    return _TORCH_DEVICE


def to_torch(a: Any) -> Any:
    """A NumPy array as a torch tensor on the benchmark's torch device."""
    import torch

    # np.array, not np.ascontiguousarray: the latter turns a 0-d array (a scalar loss's
    # cotangent) into shape (1,).
    return torch.from_numpy(np.array(a, order="C")).to(_TORCH_DEVICE)


def torch_sync() -> None:
    """Waits for torch's queued GPU work (a no-op on CPU, where torch's ops are synchronous)."""
    if _TORCH_DEVICE == "cuda":
        import torch

        torch.cuda.synchronize()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, threads, library versions, date (UTC)."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_device": str(jax.devices()[0].device_kind),
        "torch_device": _TORCH_DEVICE,
    }
    for dist in ("jax", "jaxlib", "torch", "torchvision", "numpy"):
        info[dist] = _version(dist)
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if _TORCH_DEVICE == "cuda":
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    for var in (
        "XLA_FLAGS",
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
    ):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def _xla_memory(compiled: Any) -> dict[str, float]:
    """XLA's buffer assignment for one call: arguments, outputs and peak temporaries, in MiB."""
    try:
        m = compiled.memory_analysis()
        sizes = {
            "xla_argument_mib": m.argument_size_in_bytes,
            "xla_output_mib": m.output_size_in_bytes,
            "xla_temp_mib": m.temp_size_in_bytes,
        }
    except Exception:  # not every backend reports it
        return {}
    return {k: v / 2**20 for k, v in sizes.items()}


def jax_impl(
    fn: Callable[..., Any], *args: Any, clear_caches: bool = False, compiles: int = 1
) -> Impl:
    """Compiles ``fn`` for ``args`` (timed separately) and returns the compiled call.

    ``clear_caches`` empties JAX's in-memory caches (``jax.clear_caches()``, outside
    the timer) first, so that the compile time includes tracing every inner jitted
    function, as a program's first call does, whatever ran before. ``compiles``:
    how many such cold compiles to time; the median is reported (a single compile
    of a whole network moves by a third from one to the next on a shared VM).
    """
    times = []
    for _ in range(compiles):
        if clear_caches:
            jax.clear_caches()
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        times.append(time.perf_counter() - start)
    info = {**_xla_memory(compiled), **({"cold_compile": True} if clear_caches else {})}
    return Impl(lambda: jax.block_until_ready(compiled(*args)), float(np.median(times)), info)


def _cotangent(shape_dtype: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape_dtype.shape).astype(shape_dtype.dtype)


def jax_fwd_bwd(fn: Callable[..., Any], args: tuple, argnums: Sequence[int], seed: int = 0) -> Impl:
    """Forward plus VJP of ``fn`` w.r.t. ``args[i] for i in argnums`` (fixed random cotangent)."""
    argnums = tuple(argnums)
    cot = jax.tree_util.tree_map(
        lambda s: jax.numpy.asarray(_cotangent(s, seed)), jax.eval_shape(fn, *args)
    )

    # The cotangent is an argument, not a closed-over constant: XLA could otherwise
    # constant-fold a backward pass that depends on it alone (avg_pool2d's), for minutes.
    def fwd_bwd(cot, *a):
        def of_diff(*diff):
            full = list(a)
            for i, d in zip(argnums, diff):
                full[i] = d
            return fn(*full)

        primal, vjp = jax.vjp(of_diff, *(a[i] for i in argnums))
        return primal, vjp(cot)

    return jax_impl(fwd_bwd, cot, *args)


def torch_fwd(fn: Callable[..., Any], *args: Any) -> Impl:
    """``fn(*args)`` under ``torch.no_grad()`` (after one warm-up call)."""
    import torch

    def run():
        with torch.no_grad():
            out = fn(*args)
        torch_sync()
        return out

    run()  # warm-up (allocator, lazy init)
    return Impl(run)


def torch_fwd_bwd(
    fn: Callable[..., Any], args: tuple, argnums: Sequence[int], seed: int = 0
) -> Impl:
    """Forward plus ``torch.autograd.grad`` w.r.t. ``args[i] for i in argnums`` (same cotangent)."""
    import torch

    leaves = [
        a.detach().requires_grad_(i in argnums)
        if isinstance(a, torch.Tensor) and a.is_floating_point()
        else a
        for i, a in enumerate(args)
    ]
    out = fn(*leaves)
    cot = to_torch(_cotangent(jax.ShapeDtypeStruct(tuple(out.shape), np.float32), seed))
    cot = cot.to(out.dtype)
    inputs = [leaves[i] for i in argnums]

    def run():
        grads = torch.autograd.grad(fn(*leaves), inputs, cot)
        torch_sync()
        return grads

    run()
    return Impl(run)


def fwd_and_bwd_cases(
    op: str,
    workload: str,
    ours: Callable[..., Any],
    theirs: Callable[..., Any],
    bare: Callable[..., Any] | None,
    jax_args: tuple,
    torch_args: tuple,
    grads: Sequence[int],
    flops: float | None = None,
) -> list[Case]:
    """The ``fwd`` and ``fwd+bwd`` cases of one workload: jaxops (``ours``), torch
    (``theirs``) and, if given, the bare-lax version, the backward w.r.t. ``grads``.

    ``flops`` is the forward's count; the backward is counted as twice the forward.
    """

    def fwd() -> dict[str, Impl]:
        impls = {"jaxops": jax_impl(ours, *jax_args), "torch": torch_fwd(theirs, *torch_args)}
        if bare is not None:
            impls["lax"] = jax_impl(bare, *jax_args)
        return impls

    def fwd_bwd() -> dict[str, Impl]:
        impls = {
            "jaxops": jax_fwd_bwd(ours, jax_args, grads),
            "torch": torch_fwd_bwd(theirs, torch_args, grads),
        }
        if bare is not None:
            impls["lax"] = jax_fwd_bwd(bare, jax_args, grads)
        return impls

    return [
        Case(op, workload, "fwd", fwd, flops=flops),
        Case(op, workload, "fwd+bwd", fwd_bwd, flops=None if flops is None else 3 * flops),
    ]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


RSS_METHOD = (
    "peak_rss_mib: resident memory one call adds to the process (Linux VmHWM after the call "
    "minus VmRSS before it; after a warm-up call, malloc_trim(0) and a high-water reset "
    "through /proc/self/clear_refs; harness.rss_growth)"
)


def rss_growth(impl: Impl) -> int | None:
    """Peak resident memory one call of ``impl`` adds to the process, in bytes.

    After a warm-up call (and ``impl.reset``), the allocator's free memory is
    handed back to the kernel (glibc's ``malloc_trim``) and the kernel's
    high-water mark is reset (``/proc/self/clear_refs``); the result is that mark
    after one call minus the resident size before it: the call's temporaries and
    outputs at their peak, as the kernel counts pages, whatever the framework
    or the malloc settings. Linux only: ``None`` where ``/proc`` cannot do this.
    """
    impl.run()
    if impl.reset is not None:
        impl.reset()
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim is not None:
            trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident size
        before = _status_kib("VmRSS")
        result = impl.run()
        peak = _status_kib("VmHWM")
    except (OSError, KeyError):
        return None
    del result
    return (peak - before) * 1024


def measure(impls: dict[str, Impl], reps: int = 15, min_time_s: float = 0.0) -> dict[str, Stats]:
    """Interleaved repetitions; each implementation gets at least ``reps`` timed calls after one
    warm-up, and more until ``min_time_s`` of timing has passed."""
    for impl in impls.values():
        impl.run()
    samples: dict[str, list[float]] = {name: [] for name in impls}
    start = time.perf_counter()
    rep = 0
    while rep < reps or time.perf_counter() - start < min_time_s:
        for name, impl in impls.items():
            t0 = time.perf_counter()
            impl.run()
            samples[name].append(time.perf_counter() - t0)
        rep += 1
    return {
        name: Stats(
            statistics.median(ts),
            min(ts),
            max(ts),
            impls[name].compile_s,
            len(ts),
            dict(impls[name].info),
        )
        for name, ts in samples.items()
    }
