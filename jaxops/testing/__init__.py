"""The parity registry shared by the test suite and ``python -m jaxops``.

``REGISTRY`` holds one :class:`OpInfo` per op, from one registry module per op
module (``ops_pooling`` for ``jaxops/pooling.py``, ...); ``ALL_OPS`` is the
list of their names, in registry order.
"""

import contextlib
from collections.abc import Iterator

from jaxops import _platform
from jaxops.testing import (
    ops_activation,
    ops_conv,
    ops_losses,
    ops_normalization,
    ops_pooling,
    ops_roi,
    ops_shape,
)
from jaxops.testing.opinfo import (
    DataError,
    ErrorInput,
    OpInfo,
    SampleInput,
    Tol,
    is_floating,
    no_batch_axis,
)

REGISTRY: dict[str, OpInfo] = {
    info.name: info
    for module in (
        ops_pooling,
        ops_conv,
        ops_shape,
        ops_activation,
        ops_roi,
        ops_normalization,
        ops_losses,
    )
    for info in module.OPS
}


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Makes every op trace its portable formulation (the one GPU and TPU run), on any backend.

    Ops whose formulation differs per platform (:mod:`jaxops._platform`) normally
    carry a ``cpu`` branch and a portable one, and XLA:CPU runs the first. Inside
    this context they trace the portable one alone, so a CPU machine can check
    it against torch. The setting is part of JAX's jit cache key (a
    ``jax.make_user_context``): nothing traced inside is reused outside, nor
    the reverse.

    Example:
        >>> with jaxops.testing.portable():
        ...     y = jaxops.conv2d(x, w)  # lax.conv_general_dilated, as on GPU
    """
    with _platform.portable_only():
        yield


# The op names in registry order (the report's order); the registry is the only list.
ALL_OPS = tuple(REGISTRY)

__all__ = [
    "ALL_OPS",
    "REGISTRY",
    "portable",
    "DataError",
    "ErrorInput",
    "OpInfo",
    "SampleInput",
    "Tol",
    "is_floating",
    "no_batch_axis",
]
