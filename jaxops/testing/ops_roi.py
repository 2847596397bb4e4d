"""Registry entries for the roi ops (filled in by their issue)."""

from jaxops.testing.opinfo import OpInfo

OPS: list[OpInfo] = []
