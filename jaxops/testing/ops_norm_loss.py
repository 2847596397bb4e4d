"""Registry entries for the norm_loss ops (filled in by their issue)."""

from jaxops.testing.opinfo import OpInfo

OPS: list[OpInfo] = []
