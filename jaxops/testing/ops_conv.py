"""Registry entries for the conv ops (filled in by their issue)."""

from jaxops.testing.opinfo import OpInfo

OPS: list[OpInfo] = []
