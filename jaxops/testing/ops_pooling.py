"""Registry entries for the pooling ops (filled in by their issue)."""

from jaxops.testing.opinfo import OpInfo

OPS: list[OpInfo] = []
