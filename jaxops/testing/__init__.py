"""The parity registry shared by the test suite and ``python -m jaxops``.

``REGISTRY`` holds one :class:`OpInfo` per implemented op; ``ALL_OPS`` is the
full list the project covers, so the report can name ops not yet implemented.
"""

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

__all__ = ["ALL_OPS", "REGISTRY", "ErrorInput", "OpInfo", "SampleInput", "Tol", "is_floating"]
