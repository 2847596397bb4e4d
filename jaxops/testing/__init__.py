"""The parity registry shared by the test suite and ``python -m jaxops``.

``REGISTRY`` holds one :class:`OpInfo` per op, from one registry module per op
module (``ops_pooling`` for ``jaxops/pooling.py``, ...); ``ALL_OPS`` is the
list of their names, in registry order.
"""

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
    for module in (ops_pooling, ops_conv, ops_shape, ops_activation, ops_roi, ops_normalization, ops_losses)
    for info in module.OPS
}

# The op names in registry order (the report's order); the registry is the only list.
ALL_OPS = tuple(REGISTRY)

__all__ = [
    "ALL_OPS",
    "REGISTRY",
    "DataError",
    "ErrorInput",
    "OpInfo",
    "SampleInput",
    "Tol",
    "is_floating",
    "no_batch_axis",
]
