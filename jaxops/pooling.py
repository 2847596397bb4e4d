"""Placeholder: the ops of this module land with their issue."""


def max_pool2d(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.max_pool2d is not implemented yet")


def max_unpool2d(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.max_unpool2d is not implemented yet")


def avg_pool2d(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.avg_pool2d is not implemented yet")

