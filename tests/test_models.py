"""The benchmark networks (``benchmarks/models.py``) give torch's loss and gradients.

A small ResNet-18 (batch 4, 16x16 input: the last stage is 2x2, so every
batch-norm channel is normalised over at least 16 values) and a small RoI head,
both with SiLU (a ReLU gate that rounding flips would move a gradient by
percents). One step of the jaxops network in float32 is compared with the same
step of torch in float64, the truth: the loss, every gradient leaf and every
updated running statistic, each as ``max|ours - truth| / max|truth|``.

Why ``TOL = 1e-4``: float32's unit roundoff is ``u = 2**-24 = 6e-8``. A gradient
leaf of ResNet-18 comes out of about 40 dependent layers (20 forward, 20
backward), each a sum of up to ``n = 3 * 3 * 512 = 4608`` products, whose
rounding error grows like ``sqrt(n) * u = 4e-6`` (blocked summation, random
signs). Batch norm keeps every layer's scale near 1, so the layers' errors add
up, in quadrature if independent (``sqrt(40) * 4e-6 = 2.6e-5``) and at worst
linearly (``40 * 4e-6 = 1.6e-4``). ``1e-4`` sits between the two; torch's own
float32 step measures ``1.2e-5`` here. The RoI head is shallower
(``roi_align`` -> 3136 -> 256 -> 21) and well inside the same bound.

The absolute bound alone is loose; ``RATIO`` makes it meaningful: jaxops may be
at most 4x as far from the truth as torch's float32 step is (measured: 0.6x for
the ResNet gradients, 1.0x for the RoI head). A formula mistake fails either:
normalising with the unbiased variance is off by ``1/(n-1)`` (6% on the 2x2
stage), a wrong momentum by 10% of a statistic, a pixel shift in ``roi_align``
by far more.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import models  # noqa: E402 -- benchmarks/models.py, importable only once BENCH is on sys.path

torch = pytest.importorskip("torch")

U = 2.0**-24
TOL = 1e-4  # gradients and running statistics, see above
LOSS_TOL = 1e-5  # the forward half of the chain only
RATIO = 4.0  # jaxops float32 vs torch float32, both against torch float64
LOSS_FLOOR = 4 * U  # a scalar's error is a few ulps either way: no ratio below that


def _errors(result_fn, *args):
    truth = result_fn("torch", *args, dtype=np.float64)
    return (
        models.compare(result_fn("jaxops", *args, dtype=np.float32), truth),
        models.compare(result_fn("torch", *args, dtype=np.float32), truth),
    )


@pytest.fixture(scope="module")
def resnet18():
    x, labels = models.resnet18_inputs(batch=4, size=16)
    return _errors(models.resnet18_result, x, labels, "silu")


@pytest.fixture(scope="module")
def roi_head():
    from workloads import roi

    features, boxes = roi.inputs(quick=True)  # (2, 64, 50, 50), 128 boxes
    return _errors(models.roi_head_result, features, boxes, models.roi_labels(len(boxes)), "silu")


def _check(ours, torch32):
    worst = sorted(ours["leaves"].items(), key=lambda kv: -kv[1])[:3]
    assert ours["loss"] <= LOSS_TOL, ours["loss"]
    assert ours["loss"] <= max(RATIO * torch32["loss"], LOSS_FLOOR), (ours["loss"], torch32["loss"])
    assert ours["grads"] <= TOL, worst
    assert ours["grads"] <= RATIO * torch32["grads"], (worst, torch32["grads"])
    if ours["stats"] is not None:
        assert ours["stats"] <= TOL, (ours["stats_worst"], ours["stats"])
        assert ours["stats"] <= RATIO * torch32["stats"], (ours["stats"], torch32["stats"])


def test_resnet18_matches_torch_float64(resnet18):
    ours, torch32 = resnet18
    assert len(ours["leaves"]) == 62 + 40  # every parameter and every running statistic
    _check(ours, torch32)


def test_roi_head_matches_torch_float64(roi_head):
    ours, torch32 = roi_head
    assert set(ours["leaves"]) == {
        "features",
        "fc6.weight",
        "fc6.bias",
        "cls_score.weight",
        "cls_score.bias",
    }
    _check(ours, torch32)


def test_weights_are_torchvisions():
    """The JAX nets read the torch module's own parameters, and the stem is the CIFAR one."""
    model = models.resnet18_torch("relu")
    params, stats = models.params_from_torch(model)
    assert params["conv1.weight"].shape == (64, 3, 3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)
    np.testing.assert_array_equal(params["fc.weight"], model.fc.weight.detach().numpy())
    assert set(stats) == {k for k, _ in model.named_buffers() if "running" in k}
