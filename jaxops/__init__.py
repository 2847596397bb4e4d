"""jaxops: PyTorch-exact functional operators in JAX.

Every op is a pure function of ``jax.lax`` primitives, mirrors the name,
argument order and defaults of its ``torch.nn.functional`` /
``torchvision.ops`` counterpart, and works under ``jit``, ``vmap``, ``grad``,
``jvp`` and ``jax.export``.
"""

from jaxops._checks import checked
from jaxops.activation import sigmoid
from jaxops.conv import conv2d, conv_transpose2d
from jaxops.losses import cross_entropy, mse_loss
from jaxops.normalization import BatchNormOutput, batch_norm
from jaxops.pooling import avg_pool2d, max_pool2d, max_unpool2d
from jaxops.roi import roi_align, roi_pool
from jaxops.shape import flatten

__version__ = "0.1.0"


def _register_export_types() -> None:
    """Lets ``jax.export`` serialise functions returning jaxops' NamedTuple results."""
    from jax import export

    from jaxops.normalization import BatchNormOutput

    export.register_namedtuple_serialization(
        BatchNormOutput, serialized_name="jaxops.BatchNormOutput"
    )


_register_export_types()

__all__ = [
    "BatchNormOutput",
    "avg_pool2d",
    "batch_norm",
    "checked",
    "conv2d",
    "conv_transpose2d",
    "cross_entropy",
    "flatten",
    "max_pool2d",
    "max_unpool2d",
    "mse_loss",
    "roi_align",
    "roi_pool",
    "sigmoid",
]
