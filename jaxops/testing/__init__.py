"""The parity registry shared by the test suite and ``python -m jaxops``.

``REGISTRY`` holds one :class:`OpInfo` per implemented op; ``ALL_OPS`` is the
full list the project covers, so the report can name ops not yet implemented.
"""

import contextlib
from collections.abc import Iterator

from jaxops import _platform
from jaxops.testing import ops_basic, ops_conv, ops_norm_loss, ops_pooling, ops_roi
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput, Tol, is_floating

ALL_OPS = (
    "max_pool2d",
    "max_unpool2d",
    "avg_pool2d",
    "conv2d",
    "conv_transpose2d",
    "flatten",
    "sigmoid",
    "roi_pool",
    "roi_align",
    "batch_norm",
    "cross_entropy",
    "mse_loss",
)

REGISTRY: dict[str, OpInfo] = {
    info.name: info
    for module in (ops_pooling, ops_conv, ops_basic, ops_roi, ops_norm_loss)
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


__all__ = ["ALL_OPS", "portable", "REGISTRY", "ErrorInput", "OpInfo", "SampleInput", "Tol", "is_floating"]
