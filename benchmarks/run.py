"""Times jaxops against PyTorch (and the bare lax primitive) on realistic workloads.

    python benchmarks/run.py                    # every op, realistic shapes
    python benchmarks/run.py --quick            # smaller shapes, under two minutes
    python benchmarks/run.py --op conv2d --op max_pool2d
    python benchmarks/run.py --threads 1        # XLA and torch pinned to one core
    python benchmarks/run.py --list             # the cases, without timing them

Each case is timed three ways where it applies: jaxops (jitted), PyTorch eager
with the same thread count, and the bare lax primitive jaxops builds on. The
method is in benchmarks/harness.py: compile time excluded (and reported),
interleaved repetitions, medians with min-max. End-to-end models
(workloads/models.py: ``--op resnet18``, ``--op roi_head``) also report peak
memory per implementation and a parity check against torch, listed under the
table.

Writes, under --out (default benchmarks/results/), with the stem "bench"
("bench-quick" for --quick, "bench-tuned-malloc" for --tuned-malloc, so such a run
never overwrites the default one):
  <stem>.json  every statistic, with the machine (CPU, cores, versions, date)
  <stem>.png   the jaxops/torch time ratio per op and mode (log scale)
  <stem>.md    the table in Markdown, as shown in the README
--update-readme also replaces the table between the README's bench markers.

--tuned-malloc re-runs the benchmark with glibc's malloc told to keep freed
memory (MALLOC_ARENA_MAX=1, MALLOC_MMAP_THRESHOLD_=1e9, MALLOC_TRIM_THRESHOLD_=4e9),
for torch and JAX alike. By default glibc hands every large freed block back to
the kernel, so a program that allocates fresh outputs on each call (XLA:CPU
does, from its worker threads) page-faults its outputs in again every time;
memory-bound ops then measure the allocator, not the kernel (docs/performance.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))  # this checkout's jaxops, also when it is not pip-installed

import harness  # noqa: E402
import workloads  # noqa: E402

IMPLS = ("jaxops", "torch", "lax")
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


# ---------------------------------------------------------------- collecting and timing


def load_cases(quick: bool) -> tuple[list[harness.Case], list[str]]:
    """Every case of every workload module, and the modules that failed to load.

    Cases come in the README's op order; references such as ``matmul_peak`` last.
    """
    from jaxops.testing import ALL_OPS

    cases, broken = [], []
    for mod in sorted(pkgutil.iter_modules(workloads.__path__), key=lambda m: m.name):
        try:
            cases.extend(importlib.import_module(f"workloads.{mod.name}").cases(quick))
        except Exception as exc:  # one broken family must not hide the others' numbers
            broken.append(f"workloads/{mod.name}.py: {type(exc).__name__}: {exc}")
    rank = {op: i for i, op in enumerate(ALL_OPS)}
    return sorted(cases, key=lambda c: rank.get(c.op, len(rank))), broken


def time_case(case: harness.Case, reps: int, min_time_s: float) -> dict[str, Any]:
    """Builds, compiles and times one case; returns its JSON record (never raises)."""
    record: dict[str, Any] = {
        "op": case.op,
        "workload": case.workload,
        "mode": case.mode,
        "flops": case.flops,
        "note": case.note,
        "impls": {},
        "ratio_torch": None,
        "ratio_lax": None,
        "error": None,
    }
    try:
        impls = case.make()
        if case.memory:
            record["memory_method"] = harness.RSS_METHOD
            for impl in impls.values():
                grown = harness.rss_growth(impl)
                impl.info["peak_rss_mib"] = None if grown is None else grown / 2**20
        stats = harness.measure(impls, reps=reps, min_time_s=min_time_s)
        del impls  # release the inputs before the next case
    except NotImplementedError as exc:
        record["error"] = f"not implemented: {exc}"
        return record
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        return record
    record["impls"] = {name: stats[name].to_dict() for name in IMPLS if name in stats}
    record["impls"].update({n: s.to_dict() for n, s in stats.items() if n not in IMPLS})
    jx = stats.get("jaxops")
    if jx is not None:
        if "torch" in stats:
            record["ratio_torch"] = jx.median_s / stats["torch"].median_s
        if "lax" in stats:
            record["ratio_lax"] = jx.median_s / stats["lax"].median_s
        if case.flops:
            record["jaxops_gflops"] = case.flops / jx.median_s / 1e9
    if case.parity is not None:
        try:
            record["parity"] = case.parity()
        except Exception as exc:
            record["parity"] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
    return record


def failed(record: dict[str, Any]) -> bool:
    """A crash (timing or parity) is a failure; an op that is not implemented yet is only
    reported."""
    if "error" in (record.get("parity") or {}):
        return True
    return record["error"] is not None and not record["error"].startswith("not implemented")


# ---------------------------------------------------------------- formatting


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def timing_cell(record: dict[str, Any], impl: str) -> str:
    s = record["impls"].get(impl)
    if s is None:
        return "-"
    return f"{fmt_ms(s['median_ms'])} ({fmt_ms(s['min_ms'])}-{fmt_ms(s['max_ms'])})"


def ratio_cell(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def memory_cell(record: dict[str, Any]) -> str:
    """Peak memory growth of one call in MiB, jaxops / torch / lax, where measured."""
    peaks = [record["impls"].get(impl, {}).get("peak_rss_mib") for impl in IMPLS]
    if all(p is None for p in peaks):
        return "-"
    while peaks[-1] is None:
        peaks.pop()
    return " / ".join("-" if p is None else f"{p:.0f}" for p in peaks)


def row_cells(record: dict[str, Any]) -> list[str]:
    """op, workload, mode, jaxops/torch/lax ms as median (min-max), ratios, compile s, GFLOP/s,
    peak MiB."""
    head = [record["op"], record["workload"], record["mode"]]
    if record["error"]:
        return head + [record["error"]]
    jx = record["impls"].get("jaxops")
    return head + [
        *(timing_cell(record, impl) for impl in IMPLS),
        ratio_cell(record["ratio_torch"]),
        ratio_cell(record["ratio_lax"]),
        "-" if jx is None else f"{jx['compile_s']:.2f}",
        f"{record['jaxops_gflops']:.1f}" if "jaxops_gflops" in record else "-",
        memory_cell(record),
    ]


HEADER = [
    "op",
    "workload",
    "mode",
    "jaxops ms",
    "torch ms",
    "lax ms",
    "/torch",
    "/lax",
    "compile s",
    "GFLOP/s",  # jaxops' rate, for cases that state their flops
    "peak MiB",  # memory one call adds, jaxops / torch / lax, for cases that measure it
]
RIGHT = {3, 4, 5, 6, 7, 8, 9, 10}  # numeric columns are right-aligned
# Widths of the timing columns; a cell is "median (min-max)" in ms.
WIDTHS = [0, 0, 7, 20, 20, 20, 6, 5, 9, 7, 14]


def _err(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def notes(record: dict[str, Any]) -> list[str]:
    """Lines shown under the table for a case that has them: the cold compile time
    (and XLA's temp memory) of each JAX implementation, and the parity check."""
    name = f"{record['op']} {record['workload']}"
    out = []
    cold = {impl: s for impl, s in record["impls"].items() if s.get("cold_compile")}
    if cold:
        out.append(
            f"{name}: compile after jax.clear_caches(): "
            + ", ".join(f"{impl} {s['compile_s']:.1f} s" for impl, s in cold.items())
            + "; XLA temp MiB "
            + ", ".join(
                f"{impl} {s.get('xla_temp_mib', float('nan')):.0f}" for impl, s in cold.items()
            )
        )
    parity = record.get("parity")
    if parity and "error" in parity:
        out.append(f"{name}: parity check failed: {parity['error']}")
    elif parity:
        for label, c in parity["results"].items():
            stats = "" if c.get("stats") is None else f", stats {_err(c['stats'])}"
            out.append(
                f"{name}: parity ({parity['setting']}) {label}: loss {_err(c['loss'])}, "
                f"grads {_err(c['grads'])} ({c['grads_worst']}){stats}"
            )
    return out


class Table:
    """A fixed-width terminal table whose rows can be printed as they arrive."""

    def __init__(self, cases: list[harness.Case]):
        self.widths = list(WIDTHS)
        self.widths[0] = max([len(HEADER[0])] + [len(c.op) for c in cases])
        self.widths[1] = min(44, max([len(HEADER[1])] + [len(c.workload) for c in cases]))

    def line(self, cells: list[str]) -> str:
        out = []
        for k, cell in enumerate(cells):
            w = self.widths[k] if k < len(self.widths) else 0
            if k == 1 and len(cell) > w:
                cell = cell[: w - 1] + "~"
            out.append(cell.rjust(w) if k in RIGHT and len(cells) > 4 else cell.ljust(w))
        return "  ".join(out).rstrip()

    def header(self) -> str:
        return "\n".join([self.line(HEADER), self.line(["-" * w for w in self.widths])])


def _threads(machine: dict[str, Any]) -> str:
    n = machine["threads"]
    return f"{n} thread{'s' if n != 1 else ''}"


def _where(machine: dict[str, Any]) -> str:
    """The hardware the numbers come from: the GPU for --device gpu, else the CPU and threads."""
    if machine.get("gpu"):
        return f"{machine['gpu']} (jax {machine['jax_backend']}, torch cuda, TF32 off)"
    return f"{machine['cpu']} ({_threads(machine)})"


def markdown_table(results: list[dict[str, Any]], machine: dict[str, Any], settings: dict) -> str:
    """The results as the README shows them: a Markdown table under a line naming the machine."""
    lines = [
        f"Measured {machine['date'][:10]} on {_where(machine)}; "
        f"jax {machine['jax']}, torch {machine['torch']}, numpy {machine['numpy']}"
        + (", `--quick` shapes" if settings.get("quick") else "")
        + (", `--tuned-malloc`" if machine.get("MALLOC_ARENA_MAX") else "")
        + ". Times in ms, median (min-max) of interleaved repetitions, compile excluded; "
        "`/torch` and `/lax` are jaxops' median over theirs (below 1: jaxops is faster); "
        "GFLOP/s is jaxops' rate where a case states its flops; peak MiB is the resident "
        "memory one call adds (jaxops / torch / lax), where a case measures it.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---:" if k in RIGHT else "---" for k in range(len(HEADER))) + "|",
    ]
    for r in results:
        cells = row_cells(r)
        if r["error"]:
            cells = cells[:3] + [f"({cells[3]})"] + [""] * (len(HEADER) - 4)
        cells[1] = f"`{cells[1]}`"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    extra = [line for r in results for line in notes(r)]
    if extra:
        lines += ["", "Parity: max |ours - reference| / max |reference|, worst leaf named.", ""]
        lines += [f"- {line}" for line in extra]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- chart


def plot_ratios(
    results: list[dict[str, Any]], machine: dict[str, Any], path: Path, quick: bool
) -> None:
    """Horizontal bars of jaxops/torch per (op, workload), a bar per mode; log scale, 1.0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    timed = [r for r in results if r["ratio_torch"] is not None]
    groups: list[tuple[str, str]] = []
    for r in timed:
        if (r["op"], r["workload"]) not in groups:
            groups.append((r["op"], r["workload"]))
    modes = sorted({r["mode"] for r in timed}, key=lambda m: (m != "fwd", m))
    colors = {"fwd": "#4C72B0", "fwd+bwd": "#DD8452"}
    height = 0.8 / max(1, len(modes))

    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.32 * max(1, len(groups)) * max(1, len(modes))))
    ratios = [r["ratio_torch"] for r in timed] or [1.0]
    span = max(2.0, max(max(ratios), 1 / min(ratios)) * 1.6)
    for r in timed:
        g, m = groups.index((r["op"], r["workload"])), modes.index(r["mode"])
        y = g + (m - (len(modes) - 1) / 2) * height
        ax.barh(
            y,
            r["ratio_torch"] - 1.0,
            left=1.0,
            height=height * 0.9,
            color=colors.get(r["mode"], f"C{m + 2}"),
            label=r["mode"],
        )
        ax.annotate(
            f"{r['ratio_torch']:.2f}",
            (r["ratio_torch"], y),
            xytext=(3 if r["ratio_torch"] >= 1 else -3, 0),
            textcoords="offset points",
            ha="left" if r["ratio_torch"] >= 1 else "right",
            va="center",
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_xlim(1 / span, span)
    step = 1 if span <= 16 else 2
    ticks = [2.0**k for k in range(-10, 11, step) if 1 / span <= 2.0**k <= span]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(
        ticker.FuncFormatter(lambda v, _: f"{v:g}x" if v >= 1 else f"1/{1 / v:g}x")
    )
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.axvline(1.0, color="black", linewidth=1.2)
    ax.set_yticks(range(len(groups)))
    labels = [f"{op}  {w if len(w) <= 40 else w[:39] + '~'}" for op, w in groups]
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_xlabel("jaxops time / PyTorch time (median; < 1: jaxops faster)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), loc="lower right", fontsize=8)
    ax.set_title(
        "jaxops vs PyTorch eager, "
        + ("GPU" if machine.get("gpu") else "CPU")
        + (" (--quick shapes)" if quick else "")
        + f"\n{_where(machine)}, {machine['date'][:10]}, "
        f"jax {machine['jax']}, torch {machine['torch']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- README


def update_readme(readme: Path, table_md: str, chart: Path) -> None:
    """Replaces the text between the README's bench markers with the table and the chart."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} markers to replace")
    rel = Path(os.path.relpath(chart.resolve(), readme.resolve().parent)).as_posix()
    body = f"{README_START}\n![jaxops / torch time ratios]({rel})\n\n{table_md}{README_END}"
    head, rest = text.split(README_START, 1)
    readme.write_text(head + body + rest.split(README_END, 1)[1])


# ---------------------------------------------------------------- main


TUNED_MALLOC = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": "1000000000",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repetitions")
    parser.add_argument(
        "--op",
        action="append",
        metavar="NAME",
        help="only this op (repeatable, or comma-separated)",
    )
    parser.add_argument("--mode", choices=("fwd", "fwd+bwd"), help="only this mode")
    parser.add_argument("--reps", type=int, help="timed repetitions per case (default 15, quick 5)")
    parser.add_argument(
        "--min-time",
        type=float,
        metavar="S",
        help="repeat each case for at least S seconds (default 1, quick 0.2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="run XLA and torch on N cores (default: all this process may use)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results",
        metavar="DIR",
        help="where the JSON, PNG and Markdown go (default benchmarks/results/)",
    )
    parser.add_argument(
        "--name",
        metavar="STEM",
        help='file stem (default "bench"; "-tuned-malloc", "-quick" appended for those runs)',
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="put the table and chart into README.md between the bench markers",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (there is none anyway when stderr is not a terminal)",
    )
    parser.add_argument(
        "--tuned-malloc",
        action="store_true",
        help="run under glibc settings that keep freed memory (see above)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="gpu: jaxops on JAX's GPU backend against torch on CUDA (TF32 off, "
        'synchronised); the stem becomes "bench-gpu"',
    )
    args = parser.parse_args(argv)
    if args.tuned_malloc and os.environ.get("MALLOC_ARENA_MAX") != "1":
        # glibc reads these once, at process start: run this benchmark again under them.
        env = dict(os.environ, **TUNED_MALLOC)
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    if args.threads:
        harness.limit_threads(args.threads)  # before any JAX array exists: XLA sizes its pool now

    cases, broken = load_cases(args.quick)
    known = sorted({c.op for c in cases})
    wanted = {name for arg in args.op or () for name in arg.split(",") if name}
    if wanted - set(known):
        parser.error(
            f"no benchmark for op(s) {', '.join(sorted(wanted - set(known)))}; "
            f"ops with workloads: {', '.join(known)}"
        )
    cases = [
        c
        for c in cases
        if (not wanted or c.op in wanted) and (not args.mode or c.mode == args.mode)
    ]
    if args.list:
        for c in cases:
            print(f"{c.op:<18} {c.mode:<8} {c.workload}")
        return 0
    for b in broken:
        print(f"warning: {b}", file=sys.stderr)

    from tqdm import tqdm

    if args.device == "gpu":
        if harness.jax.default_backend() != "gpu":
            parser.error(f"--device gpu: JAX's default backend is {harness.jax.default_backend()}")
        harness.use_torch_device("cuda")
    harness.setup_torch()
    reps = args.reps or (5 if args.quick else 15)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 1.0)
    machine = harness.machine_info()
    print(
        f"jaxops benchmarks{' (--quick)' if args.quick else ''}: {_where(machine)}; "
        f"jax {machine['jax']}, torch {machine['torch']}. "
        f"ms: median (min-max) of {reps}+ interleaved reps; /torch, /lax: jaxops' time over theirs;"
        " GFLOP/s: jaxops'."
    )
    table = Table(cases)
    print(table.header(), flush=True)
    start = time.perf_counter()
    results = []
    progress = dict(
        unit="case",
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        disable=True if args.no_progress else None,
    )  # None: only on a terminal
    with tqdm(cases, **progress) as bar:
        for case in bar:
            bar.set_postfix_str(f"{case.op} {case.mode}")
            record = time_case(case, reps, min_time)
            results.append(record)
            bar.write(table.line(row_cells(record)), file=sys.stdout)
            for line in notes(record):
                bar.write(f"    {line}", file=sys.stdout)
    wall_s = time.perf_counter() - start

    settings = {
        "quick": args.quick,
        "reps": reps,
        "min_time_s": min_time,
        "device": args.device,
        "ops": sorted(wanted) or None,
        "mode": args.mode,
        "wall_s": wall_s,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or (
        "bench"
        + ("-gpu" if args.device == "gpu" else "")
        + ("-tuned-malloc" if args.tuned_malloc else "")
        + ("-quick" if args.quick else "")
    )
    paths = {"json": args.out / f"{stem}.json", "md": args.out / f"{stem}.md"}
    paths["json"].write_text(
        json.dumps(
            {
                "machine": machine,
                "settings": settings,
                "broken_workloads": broken,
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )
    table_md = markdown_table(results, machine, settings)
    paths["md"].write_text(table_md)
    if not args.no_chart:
        paths["png"] = args.out / f"{stem}.png"
        plot_ratios(results, machine, paths["png"], args.quick)
    if args.update_readme:
        if args.no_chart:
            parser.error("--update-readme needs the chart")
        update_readme(ROOT / "README.md", table_md, paths["png"])
        paths["readme"] = ROOT / "README.md"

    timed = [r["ratio_torch"] for r in results if r["ratio_torch"]]
    geo = math.exp(sum(map(math.log, timed)) / len(timed)) if timed else float("nan")
    print(f"\n{len(results)} cases in {wall_s:.0f} s; geometric mean jaxops/torch {geo:.2f}.")
    for r in results:
        if failed(r):
            detail = r.get("traceback", r["error"])
            print(f"FAILED {r['op']} {r['workload']} {r['mode']}:\n{detail}")
    print("Wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if broken or any(map(failed, results)) else 0


if __name__ == "__main__":
    raise SystemExit(main())
