"""What a program becomes on each backend, read from its lowered StableHLO.

Cross-platform lowering needs no device: ``jax.jit(f).trace(*args).lower(
lowering_platforms=("cuda",))`` gives the program XLA:GPU would compile, with
only the ``cuda`` branch of every :func:`jaxops._platform.choose` kept. The
tests assert the shape of the portable formulations by counting its ops here.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.extend

_OP = re.compile(r'(?:^|[\s("])(?:"?)stablehlo\.([a-z_]+)')
_CASE = re.compile(r'"stablehlo\.case"\((%[\w#]+)\)')
# A case that only maps the platform's number to a branch number: every branch returns
# an i32 constant. lax.platform_dependent emits one before each per-platform case.
_BRANCH = (
    r"\s*%[\w]+ = stablehlo\.constant dense<-?\d+> : tensor<i32>\s*"
    r"stablehlo\.return %[\w]+ : tensor<i32>\s*"
)
_SELECTOR = re.compile(
    r'(%[\w]+) = "stablehlo\.case"\(%[\w#]+\) \(\{' + _BRANCH + r"(?:\}, \{" + _BRANCH + r")*"
    r"\}\) : \(tensor<i32>\) -> tensor<i32>"
)


def lowered_text(fn: Callable[..., Any], *args: Any, platform: str) -> str:
    """The StableHLO of ``jax.jit(fn)(*args)`` lowered for ``platform`` alone."""
    return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()


def op_counts(text: str) -> collections.Counter[str]:
    """How many times each StableHLO operation occurs (``case`` counts only data-dependent ones)."""
    counts = collections.Counter(m.group(1) for m in _OP.finditer(text))
    counts.pop("return", None)
    counts["case"] = data_dependent_cases(text)
    return counts


def data_dependent_cases(text: str) -> int:
    """``stablehlo.case`` ops whose branch index depends on the data.

    ``lax.platform_dependent`` leaves, per choice, a case mapping the platform's
    number to a branch number (its branches return constants) and a case taking
    that number; once compiled for one platform both fold away. Every other
    case is a branch on the data, which XLA:GPU must read back before going on.
    """
    dependent = 0
    for function in text.split("func.func")[1:]:  # SSA names are per function
        selectors = {m.group(1) for m in _SELECTOR.finditer(function)}
        cases = _CASE.findall(function)
        dependent += len(cases) - len(selectors) - sum(index in selectors for index in cases)
    return dependent


def contraction_precisions(text: str) -> list[str]:
    """The operand precisions of every ``dot_general`` and ``convolution``, e.g. ``"HIGHEST"``.

    A contraction printed without a precision has ``DEFAULT``; a pair that
    differs is given as ``"DEFAULT/HIGHEST"``.
    """
    found = []
    for line in text.splitlines():
        if "stablehlo.dot_general" not in line and "stablehlo.convolution" not in line:
            continue
        m = re.search(r"precision = \[(\w+), (\w+)\]", line) or re.search(
            r"precision_config = \[#stablehlo<precision (\w+)>, #stablehlo<precision (\w+)>\]", line
        )
        pair = m.groups() if m else ("DEFAULT", "DEFAULT")
        found.append(pair[0] if pair[0] == pair[1] else "/".join(pair))
    return found


def has_platform_branches(fn: Callable[..., Any], *args: Any) -> bool:
    """Whether tracing ``fn(*args)`` stages out a per-platform choice of formulation."""

    def visit(jaxpr: Any) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "platform_index":
                return True
            if any(visit(sub) for sub in jax.extend.core.jaxprs_in_params(eqn.params)):
                return True
        return False

    return visit(jax.make_jaxpr(fn)(*args).jaxpr)
