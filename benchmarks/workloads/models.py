"""End-to-end steps: ResNet-18 (CIFAR stem) and a Fast R-CNN RoI head (networks in
benchmarks/models.py).

- ``resnet18``: batch 32 of 32x32 images (``--quick``: 4 of 16x16), 10
  classes, batch norm in training mode; one step is the loss and the gradients
  of every parameter (torch: ``zero_grad``, forward, ``backward``), no
  optimizer update. jaxops vs torchvision's model in eager torch vs the same
  network from bare lax ops.
- ``roi_head``: the feature map and the 512 boxes of ``workloads/roi.py``
  (``--quick``: its 64-channel map and 128 boxes) -> ``roi_align`` (7x7,
  1/16, sampling 2, aligned) -> fc 12544->256 -> ReLU -> fc 256->21 ->
  cross-entropy, gradients for the map and the fc parameters.

What is reported besides the step time:

- **Compile time**: ``lower`` + ``compile`` after ``jax.clear_caches()``, for
  jaxops and for bare lax each (a first call's cost; the persistent
  compilation cache is off unless configured): the median of three such
  compiles (one, ``--quick``).
- **Peak memory**: the resident memory one step adds to the process
  (``harness.rss_growth``: free memory handed back with ``malloc_trim``, the
  kernel's high-water mark reset through ``/proc/self/clear_refs``, the mark
  read after one step), measured the same way for every framework after a
  warm-up step, with torch's ``.grad`` released first as JAX's previous
  outputs are. It counts activations kept for the backward, temporaries and
  the gradients, not the inputs and weights. JSON ``peak_rss_mib``; JAX's
  ``compiled.memory_analysis()`` is there too (``xla_temp_mib``,
  ``xla_output_mib``, ``xla_argument_mib``).
- **Parity**: the same networks with SiLU instead of ReLU (a ReLU gate that
  rounding flips moves gradients by percents), float32, one step from the same
  weights and batch: the relative error (``max|ours - ref| / max|ref|``) of the
  loss, the worst gradient leaf and the worst running statistic, against torch
  float32 and against torch float64. ``--quick`` checks jaxops only (bare lax
  costs another compile).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import models
from harness import Case, Impl, jax_impl, to_torch, torch_device, torch_sync
from workloads import roi


def _torch_impl(model, inputs: tuple, target) -> Impl:
    def reset():
        model.zero_grad()
        for t in inputs:
            if getattr(t, "requires_grad", False):
                t.grad = None

    def run():
        loss = models.torch_step(model, inputs, target)
        torch_sync()
        return loss

    run()  # warm-up (allocator, lazy init)
    return Impl(run, reset=reset)


def _summary(c: dict) -> dict:
    return {k: v for k, v in c.items() if k != "leaves"}


def _parity(result_fn, frameworks, *args) -> dict:
    """Every JAX framework against torch float32, and everyone against torch float64."""
    ref32 = result_fn("torch", *args, dtype=np.float32)
    ref64 = result_fn("torch", *args, dtype=np.float64)
    results, leaves = {}, {}
    for fw in frameworks:
        ours = result_fn(fw, *args, dtype=np.float32)
        c = models.compare(ours, ref32)
        results[f"{fw} vs torch"] = _summary(c)
        leaves[fw] = c["leaves"]
        results[f"{fw} vs torch float64"] = _summary(models.compare(ours, ref64))
    results["torch vs torch float64"] = _summary(models.compare(ref32, ref64))
    return {"setting": "SiLU, float32", "results": results, "leaves_vs_torch": leaves}


def _resnet18_case(quick: bool) -> Case:
    batch, size = (4, 16) if quick else (32, 32)
    cold = {"clear_caches": True, "compiles": 1 if quick else 3}

    def make():
        x, y = models.resnet18_inputs(batch, size)
        model = models.resnet18_torch("relu")
        params, stats = jax.tree_util.tree_map(jnp.asarray, models.params_from_torch(model))
        model = model.to(torch_device())
        args = (params, stats, jnp.asarray(x), jnp.asarray(y))
        return {
            "jaxops": jax_impl(models.resnet18_step("jaxops"), *args, **cold),
            "torch": _torch_impl(model, (to_torch(x),), to_torch(y)),
            "lax": jax_impl(models.resnet18_step("lax"), *args, **cold),
        }

    def parity():
        x, y = models.resnet18_inputs(batch, size)
        frameworks = ("jaxops",) if quick else ("jaxops", "lax")
        return _parity(models.resnet18_result, frameworks, x, y, "silu")

    return Case(
        "resnet18",
        f"CIFAR step ({batch}, 3, {size}, {size}) 10 cls",
        "fwd+bwd",
        make,
        note="torchvision resnet18, 3x3 s1 stem, no max pool, BN training; "
        "value_and_grad(cross_entropy) vs zero_grad+forward+backward",
        memory=True,
        parity=parity,
    )


def _roi_head_case(quick: bool) -> Case:
    cold = {"clear_caches": True, "compiles": 1 if quick else 3}

    def make():
        features, boxes = roi.inputs(quick)
        labels = models.roi_labels(len(boxes))
        model = models.roi_head_torch(features.shape[1], "relu")
        params = {k: jnp.asarray(v) for k, v in models.params_from_torch(model)[0].items()}
        model = model.to(torch_device())
        step = models.roi_head_step("relu")
        args = (params, jnp.asarray(features), jnp.asarray(boxes), jnp.asarray(labels))
        inputs = (to_torch(features).requires_grad_(), to_torch(boxes))
        return {
            "jaxops": jax_impl(step, *args, **cold),
            "torch": _torch_impl(model, inputs, to_torch(labels)),
        }

    def parity():
        features, boxes = roi.inputs(quick)
        labels = models.roi_labels(len(boxes))
        return _parity(models.roi_head_result, ("jaxops",), features, boxes, labels, "silu")

    n, c, hw, k = (2, 64, 50, 128) if quick else (2, 256, 50, 512)
    return Case(
        "roi_head",
        f"({n}, {c}, {hw}, {hw}) K={k} ->256->21",
        "fwd+bwd",
        make,
        note="roi_align(7, 1/16, 2, aligned) -> fc -> ReLU -> fc -> cross_entropy; "
        "grads of the map and the fc parameters",
        memory=True,
        parity=parity,
    )


def cases(quick: bool) -> list[Case]:
    return [_resnet18_case(quick), _roi_head_case(quick)]
