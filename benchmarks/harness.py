"""Timing method shared by every benchmark.

- Inputs are prepared before timing; each implementation is a zero-argument
  callable that returns only once its result is ready (``block_until_ready``
  for JAX, torch's CPU ops are synchronous).
- JAX functions are compiled ahead of time (``jit(...).lower(...).compile()``);
  the compile time is reported separately and never enters a timing.
- Repetitions are interleaved across implementations (A B C A B C ...), so
  drifting machine load affects all of them alike; we report the median with
  min and max.
- torch runs with the same number of threads as XLA's CPU client gets (all cores).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass
class Impl:
    """One way of computing a workload: a ready-to-time callable and its compile time."""

    run: Callable[[], Any]
    compile_s: float = 0.0


@dataclasses.dataclass
class Case:
    """One workload of one op in one mode, with its implementations (``jaxops``, ``torch``, ``lax``)."""

    op: str
    workload: str
    mode: str  # "fwd" or "fwd+bwd"
    make: Callable[[], dict[str, Impl]]  # builds inputs and compiles; called outside the timer
    flops: float | None = None


@dataclasses.dataclass
class Stats:
    median_s: float
    min_s: float
    max_s: float
    compile_s: float


def threads() -> int:
    return len(os.sched_getaffinity(0))


def setup_torch() -> None:
    import torch

    torch.set_num_threads(threads())


def jax_impl(fn: Callable[..., Any], *args: Any) -> Impl:
    """Compiles ``fn`` for ``args`` (timed separately) and returns the compiled call."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return Impl(lambda: jax.block_until_ready(compiled(*args)), compile_s)


def jax_fwd_bwd(fn: Callable[..., Any], args: tuple, argnums: tuple[int, ...], seed: int = 0) -> Impl:
    """Forward plus VJP of ``fn`` w.r.t. ``argnums`` with a fixed random cotangent."""
    out = jax.eval_shape(fn, *args)
    cot = jax.tree_util.tree_map(
        lambda s: np.random.default_rng(seed).standard_normal(s.shape).astype(s.dtype), out
    )

    # The cotangent is an argument, not a closed-over constant: as a constant XLA may
    # constant-fold a backward that depends on it alone (avg_pool2d's), for minutes.
    def fwd_bwd(*a_and_cot):
        *a, c = a_and_cot
        primal, vjp = jax.vjp(lambda *d: fn(*[d[argnums.index(i)] if i in argnums else x for i, x in enumerate(a)]), *[a[i] for i in argnums])
        return primal, vjp(c)

    return jax_impl(fwd_bwd, *args, jax.tree_util.tree_map(jax.numpy.asarray, cot))


def torch_fwd(fn: Callable[..., Any], *args: Any) -> Impl:
    import torch

    def run():
        with torch.no_grad():
            return fn(*args)

    run()  # warm-up (allocator, lazy init)
    return Impl(run)


def torch_fwd_bwd(fn: Callable[..., Any], args: tuple, argnums: tuple[int, ...], seed: int = 0) -> Impl:
    import torch

    leaves = [a.detach().requires_grad_(i in argnums) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for i, a in enumerate(args)]
    out = fn(*leaves)
    cot = torch.from_numpy(np.random.default_rng(seed).standard_normal(tuple(out.shape)).astype(np.float32)).to(out.dtype)
    inputs = [leaves[i] for i in argnums]

    def run():
        y = fn(*leaves)
        return torch.autograd.grad(y, inputs, cot)

    run()
    return Impl(run)


def measure(impls: dict[str, Impl], reps: int = 15, min_time_s: float = 0.0) -> dict[str, Stats]:
    """Interleaved repetitions; each implementation gets ``reps`` timed calls after one warm-up."""
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
        name: Stats(statistics.median(ts), min(ts), max(ts), impls[name].compile_s)
        for name, ts in samples.items()
    }
