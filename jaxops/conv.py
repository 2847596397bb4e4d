"""Placeholder: the ops of this module land with their issue."""


def conv2d(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.conv2d is not implemented yet")


def conv_transpose2d(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.conv_transpose2d is not implemented yet")

