"""roi_pool and roi_align: feature map (2, 256, 50, 50), 512 RoIs, 7x7 output, spatial_scale 1/16.

Boxes are drawn in image coordinates (800 x 800, sides 16..400 px), as a Fast R-CNN
head sees them. Peak temporary memory of the compiled jaxops programs is printed
by ``PYTHONPATH=.:benchmarks python benchmarks/workloads/roi.py`` (from
``compiled.memory_analysis()``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxops

from harness import Case, jax_fwd_bwd, jax_impl, to_torch, torch_fwd, torch_fwd_bwd


def inputs(quick: bool):
    n, c, hw, k = (2, 64, 50, 128) if quick else (2, 256, 50, 512)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, hw, hw), np.float32)
    xy = rng.uniform(0, 16 * hw, (k, 2))
    wh = rng.uniform(16, 400, (k, 2))
    boxes = np.concatenate([rng.integers(0, n, (k, 1)), xy, np.minimum(xy + wh, 16 * hw - 1)], 1)
    return x, boxes.astype(np.float32)


def _fns():
    return {
        "roi_pool": lambda x, b: jaxops.roi_pool(x, b, 7, 1 / 16),
        "roi_align": lambda x, b: jaxops.roi_align(x, b, 7, 1 / 16),
    }


def cases(quick: bool) -> list[Case]:
    import torchvision

    x, boxes = inputs(quick)
    tx, tb = to_torch(x), to_torch(boxes)
    jx, jb = jnp.asarray(x), jnp.asarray(boxes)
    refs = {
        "roi_pool": lambda a, b: torchvision.ops.roi_pool(a, b, 7, 1 / 16),
        "roi_align": lambda a, b: torchvision.ops.roi_align(a, b, 7, 1 / 16),
    }
    label = f"{x.shape} K={boxes.shape[0]} 7x7 1/16"
    out = []
    for name, fn in _fns().items():
        ref = refs[name]
        out.append(
            Case(
                name,
                label,
                "fwd",
                lambda fn=fn, ref=ref: {
                    "jaxops": jax_impl(fn, jx, jb),
                    "torch": torch_fwd(ref, tx, tb),
                },
            )
        )
        out.append(
            Case(
                name,
                label,
                "fwd+bwd",
                lambda fn=fn, ref=ref: {
                    "jaxops": jax_fwd_bwd(fn, (jx, jb), (0,)),
                    "torch": torch_fwd_bwd(ref, (tx, tb), (0,)),
                },
            )
        )
    return out


def peak_memory(quick: bool = False) -> dict[str, int]:
    """Temporary bytes of the compiled forward and forward+backward programs."""
    x, boxes = inputs(quick)
    jx, jb = jnp.asarray(x), jnp.asarray(boxes)
    result = {}
    for name, fn in _fns().items():
        fwd = jax.jit(fn).lower(jx, jb).compile()
        result[f"{name} fwd"] = fwd.memory_analysis().temp_size_in_bytes
        grad = jax.jit(jax.grad(lambda a, b, fn=fn: jnp.sum(fn(a, b) ** 2))).lower(jx, jb).compile()
        result[f"{name} fwd+bwd"] = grad.memory_analysis().temp_size_in_bytes
    return result


if __name__ == "__main__":
    for key, value in peak_memory().items():
        print(f"{key:<20} temp {value / 2**20:8.1f} MiB")
