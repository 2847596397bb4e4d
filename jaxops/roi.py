"""Placeholder: the ops of this module land with their issue."""


def roi_pool(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.roi_pool is not implemented yet")


def roi_align(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.roi_align is not implemented yet")

