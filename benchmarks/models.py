"""End-to-end networks for the benchmarks and their parity test, each in torch and in JAX.

- **ResNet-18, CIFAR stem**: torchvision's ``resnet18(num_classes=10)`` with a
  3x3 stride-1 ``conv1`` and no max pool, batch norm in training mode. The JAX
  versions take torchvision's own (seeded) weights, as a flat dict keyed by
  torch's parameter names, and come in two flavours: built from jaxops
  (``conv2d``, ``batch_norm``, ``avg_pool2d``, ``cross_entropy``) and from bare
  ``lax``/``jnp`` (``lax.conv_general_dilated``, a plain two-pass batch norm,
  ``lax.reduce_window``, a log-softmax cross-entropy). Both use ``jax.nn``'s
  activation and a ``jnp`` matmul for the final linear layer.
- **RoI head** (Fast R-CNN box classifier): ``roi_align(output_size=7,
  spatial_scale=1/16, sampling_ratio=2, aligned=True)`` -> fc ``C*49 -> 256`` ->
  activation -> fc ``256 -> 21`` -> cross-entropy, differentiated with respect
  to the feature map and the fc parameters. There is no bare-``lax`` flavour:
  no lax primitive does RoIAlign, so a "bare" version would be another
  RoIAlign implementation rather than a baseline.

A training *step* is the loss and its gradients: ``jax.value_and_grad`` in
JAX, ``zero_grad`` + forward + ``backward`` in torch; no optimizer update on
either side. The JAX forward passes return the updated batch-norm running
statistics as auxiliary output (torch updates its buffers in place).

``activation`` is ``"relu"`` (the benchmarked networks) or ``"silu"`` (parity:
a ReLU gate that rounding flips moves a gradient by percents, SiLU has no
such gate). Nothing here assumes a device: torch models are built on torch's
default device and JAX functions run wherever their inputs live; torch is
imported only by the torch builders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxops

Params = dict[str, Any]

BN_MOMENTUM, BN_EPS = 0.1, 1e-5
ROI_OUTPUT, ROI_SCALE, ROI_SAMPLING = 7, 1 / 16, 2
ROI_HIDDEN, ROI_CLASSES = 256, 21

_JAX_ACT = {"relu": jax.nn.relu, "silu": jax.nn.silu}


def _act(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in _JAX_ACT:
        raise ValueError(f"activation must be one of {sorted(_JAX_ACT)}, got {name!r}")
    return _JAX_ACT[name]


# ---------------------------------------------------------------- torch models


def _torch_act(name: str):
    from torch import nn

    _act(name)  # same names as the JAX side
    return {"relu": nn.ReLU, "silu": nn.SiLU}[name]


def resnet18_torch(activation: str = "relu", num_classes: int = 10, seed: int = 0):
    """torchvision's ResNet-18 with the CIFAR stem, in training mode.

    Args:
        activation: ``"relu"`` or ``"silu"`` (every ReLU module replaced).
        num_classes: size of the final linear layer.
        seed: ``torch.manual_seed`` for torchvision's initialisation.

    Returns:
        A ``torch.nn.Module`` in training mode (float32, torch's default device).
    """
    import torch
    import torchvision
    from torch import nn

    act = _torch_act(activation)
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's generator
        torch.manual_seed(seed)
        model = torchvision.models.resnet18(num_classes=num_classes)
        # CIFAR stem: 3x3 stride-1 conv, no max pool; initialised as torchvision inits its convs.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    if act is not nn.ReLU:
        for module in list(model.modules()):
            for name, child in module.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(module, name, act())
    return model.train()


def roi_head_torch(
    in_channels: int = 256,
    activation: str = "relu",
    hidden: int = ROI_HIDDEN,
    num_classes: int = ROI_CLASSES,
    seed: int = 0,
):
    """The RoI head as a torch module: ``forward(features, boxes) -> logits``.

    Args:
        in_channels: channels of the feature map (fc input is ``in_channels * 49``).
        activation: ``"relu"`` or ``"silu"`` between the two fc layers.
        hidden: width of the first fc layer.
        num_classes: logits per RoI.
        seed: ``torch.manual_seed`` for ``nn.Linear``'s initialisation.

    Returns:
        A ``torch.nn.Module`` with parameters ``fc6.*`` and ``cls_score.*``
        (torchvision's Faster R-CNN names).
    """
    import torch
    import torchvision
    from torch import nn

    act = _torch_act(activation)

    class RoIHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc6 = nn.Linear(in_channels * ROI_OUTPUT**2, hidden)
            self.act = act()
            self.cls_score = nn.Linear(hidden, num_classes)

        def forward(self, features, boxes):
            r = torchvision.ops.roi_align(
                features, boxes, ROI_OUTPUT, ROI_SCALE, ROI_SAMPLING, aligned=True
            )
            return self.cls_score(self.act(self.fc6(r.flatten(1))))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RoIHead()


def params_from_torch(module) -> tuple[Params, Params]:
    """A torch module's parameters and batch-norm running statistics as NumPy arrays.

    Args:
        module: any ``torch.nn.Module``.

    Returns:
        ``(params, stats)``: dicts keyed by torch's names (``"layer1.0.conv1.weight"``,
        ``"bn1.running_mean"``), in the module's dtype. ``num_batches_tracked``
        is left out: with a fixed momentum torch does not use it.
    """
    params = {k: v.detach().cpu().numpy().copy() for k, v in module.named_parameters()}
    stats = {
        k: v.detach().cpu().numpy().copy()
        for k, v in module.named_buffers()
        if k.endswith(("running_mean", "running_var"))
    }
    return params, stats


def torch_step(model, inputs: tuple, target) -> Any:
    """One torch step: ``zero_grad`` (model and inputs that require grad), forward, ``backward``.

    Returns:
        The loss tensor; the gradients are in the ``.grad`` fields.
    """
    import torch.nn.functional as F

    model.zero_grad()
    for t in inputs:
        if getattr(t, "requires_grad", False):
            t.grad = None
    loss = F.cross_entropy(model(*inputs), target)
    loss.backward()
    return loss


def torch_grads(model, inputs: tuple, names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The ``.grad`` of every parameter (by name) and of ``inputs`` (named ``names``), as NumPy."""
    out = {k: p.grad.detach().cpu().numpy() for k, p in model.named_parameters()}
    out.update({n: t.grad.detach().cpu().numpy() for n, t in zip(names, inputs)})
    return out


# ---------------------------------------------------------------- ResNet-18 in JAX


# float32-exact contractions (torch on CPU, or on CUDA with TF32 off); XLA:CPU ignores it.
HIGHEST = lax.Precision.HIGHEST


def _linear(x, w, b):
    """``nn.Linear``: ``x @ w.T + b``."""
    return jnp.matmul(x, w.T, precision=HIGHEST) + b


class _Ops(NamedTuple):
    """The layers a flavour builds the network from."""

    conv: Callable  # (x, w, stride, padding) -> y, no bias
    batch_norm: Callable  # (x, mean, var, w, b) -> (y, new_mean, new_var), training mode
    global_pool: Callable  # (N, C, H, W) -> (N, C)
    cross_entropy: Callable  # (logits, labels) -> mean loss


def _jaxops_bn(x, mean, var, w, b):
    return jaxops.batch_norm(x, mean, var, w, b, training=True, momentum=BN_MOMENTUM, eps=BN_EPS)


def _jaxops_pool(x):
    return jaxops.flatten(jaxops.avg_pool2d(x, x.shape[2:]), 1)


JAXOPS = _Ops(
    conv=lambda x, w, s, p: jaxops.conv2d(x, w, stride=s, padding=p),
    batch_norm=_jaxops_bn,
    global_pool=_jaxops_pool,
    cross_entropy=jaxops.cross_entropy,
)


def _lax_conv(x, w, s, p):
    return lax.conv_general_dilated(
        x, w, (s, s), [(p, p)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=HIGHEST
    )


def _lax_bn(x, mean, var, w, b):
    # What one writes by hand: two-pass biased variance for normalising, unbiased for the update.
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mu = jnp.mean(x, (0, 2, 3))
    centred = x - mu[:, None, None]
    v = jnp.mean(jnp.square(centred), (0, 2, 3))
    y = centred * (lax.rsqrt(v + BN_EPS) * w)[:, None, None] + b[:, None, None]
    m = BN_MOMENTUM
    return y, (1 - m) * mean + m * mu, (1 - m) * var + m * v * (n / (n - 1))


def _lax_pool(x):
    h, w = x.shape[2:]
    zero = np.zeros((), x.dtype)  # concrete: lets JAX see a differentiable sum-reduction
    total = lax.reduce_window(x, zero, lax.add, (1, 1, h, w), (1, 1, h, w), "VALID")
    return total.reshape(x.shape[:2]) / (h * w)


def _lax_cross_entropy(logits, labels):
    z = logits - lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
    logp = z - jnp.log(jnp.sum(jnp.exp(z), axis=1, keepdims=True))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


LAX = _Ops(
    conv=_lax_conv, batch_norm=_lax_bn, global_pool=_lax_pool, cross_entropy=_lax_cross_entropy
)
FLAVOURS = {"jaxops": JAXOPS, "lax": LAX}


def _resnet18(ops: _Ops, params: Mapping, stats: Mapping, x, activation: str):
    act = _act(activation)
    new_stats: Params = {}

    def conv_bn(h, conv, bn, stride, padding):
        h = ops.conv(h, params[f"{conv}.weight"], stride, padding)
        h, new_stats[f"{bn}.running_mean"], new_stats[f"{bn}.running_var"] = ops.batch_norm(
            h,
            stats[f"{bn}.running_mean"],
            stats[f"{bn}.running_var"],
            params[f"{bn}.weight"],
            params[f"{bn}.bias"],
        )
        return h

    h = act(conv_bn(x, "conv1", "bn1", 1, 1))
    stage = 1
    while f"layer{stage}.0.conv1.weight" in params:
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in params:
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1  # torchvision: first block of stages 2-4
            out = act(conv_bn(h, f"{p}.conv1", f"{p}.bn1", stride, 1))
            out = conv_bn(out, f"{p}.conv2", f"{p}.bn2", 1, 1)
            if f"{p}.downsample.0.weight" in params:
                h = conv_bn(h, f"{p}.downsample.0", f"{p}.downsample.1", stride, 0)
            h = act(out + h)
            block += 1
        stage += 1
    logits = _linear(ops.global_pool(h), params["fc.weight"], params["fc.bias"])
    return logits, new_stats


def resnet18_jaxops(params: Mapping, stats: Mapping, x, activation: str = "relu"):
    """ResNet-18 (CIFAR stem) forward in training mode, built from jaxops.

    Args:
        params: torch-named parameters (see :func:`params_from_torch`).
        stats: torch-named running statistics.
        x: ``(N, 3, H, W)`` images.
        activation: ``"relu"`` or ``"silu"``.

    Returns:
        ``(logits, new_stats)``: ``(N, num_classes)`` logits and the updated
        running statistics (same keys as ``stats``).
    """
    return _resnet18(JAXOPS, params, stats, x, activation)


def resnet18_lax(params: Mapping, stats: Mapping, x, activation: str = "relu"):
    """The same network and contract as :func:`resnet18_jaxops`, from bare lax/jnp ops."""
    return _resnet18(LAX, params, stats, x, activation)


def resnet18_step(flavour: str = "jaxops", activation: str = "relu") -> Callable:
    """The training step of one flavour, ready for ``jax.jit``.

    Args:
        flavour: ``"jaxops"`` or ``"lax"``.
        activation: ``"relu"`` or ``"silu"``.

    Returns:
        ``step(params, stats, x, labels) -> ((loss, new_stats), grads)``, the
        ``jax.value_and_grad`` of the mean cross-entropy with respect to ``params``.
    """
    ops = FLAVOURS[flavour]

    def loss(params, stats, x, labels):
        logits, new_stats = _resnet18(ops, params, stats, x, activation)
        return ops.cross_entropy(logits, labels), new_stats

    return jax.value_and_grad(loss, has_aux=True)


def resnet18_inputs(batch: int, size: int, num_classes: int = 10, seed: int = 0):
    """Random images ``(batch, 3, size, size)`` float32 and int64 labels, as NumPy."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size), np.float32)
    return x, rng.integers(0, num_classes, batch)


# ---------------------------------------------------------------- RoI head in JAX


def roi_head_jaxops(params: Mapping, features, boxes, activation: str = "relu"):
    """RoI head logits ``(K, num_classes)`` from jaxops' ``roi_align`` and ``jnp`` matmuls.

    Args:
        params: ``fc6.weight``, ``fc6.bias``, ``cls_score.weight``, ``cls_score.bias``
            (torch's ``(out, in)`` layout).
        features: ``(N, C, H, W)`` feature map.
        boxes: ``(K, 5)`` rows ``(batch_index, x1, y1, x2, y2)`` in image coordinates.
        activation: ``"relu"`` or ``"silu"``.
    """
    r = jaxops.roi_align(features, boxes, ROI_OUTPUT, ROI_SCALE, ROI_SAMPLING, aligned=True)
    h = _act(activation)(_linear(jaxops.flatten(r, 1), params["fc6.weight"], params["fc6.bias"]))
    return _linear(h, params["cls_score.weight"], params["cls_score.bias"])


def roi_head_step(activation: str = "relu") -> Callable:
    """``step(params, features, boxes, labels) -> (loss, (param_grads, feature_grad))``."""

    def loss(params, features, boxes, labels):
        return jaxops.cross_entropy(roi_head_jaxops(params, features, boxes, activation), labels)

    return jax.value_and_grad(loss, argnums=(0, 1))


def roi_labels(k: int, seed: int = 0) -> np.ndarray:
    """Random class labels for ``k`` RoIs."""
    return np.random.default_rng(seed).integers(0, ROI_CLASSES, k)


# ---------------------------------------------------------------- parity


class StepResult(NamedTuple):
    """One step's loss, gradients and new running statistics, as NumPy (torch's names)."""

    loss: float
    grads: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]  # empty for the RoI head


def _np(tree) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


@functools.cache
def _jitted(model: str, flavour: str, activation: str) -> Callable:
    if model == "resnet18":
        return jax.jit(resnet18_step(flavour, activation))
    return jax.jit(roi_head_step(activation))


def resnet18_result(
    framework: str, x, labels, activation: str = "silu", dtype=np.float32, seed: int = 0
) -> StepResult:
    """One ResNet-18 step from torchvision's seeded weights, in one framework and dtype.

    The weights are initialised in float32 and then cast, so every framework
    and dtype starts from the same numbers.

    Args:
        framework: ``"torch"``, ``"jaxops"`` or ``"lax"``.
        x, labels: the batch, NumPy.
        activation: ``"relu"`` or ``"silu"``.
        dtype: float32 or float64.
        seed: torchvision's initialisation seed.
    """
    import torch

    model = resnet18_torch(activation, seed=seed)
    if framework == "torch":
        model = model.to(getattr(torch, np.dtype(dtype).name))
        device = next(model.parameters()).device
        tx = torch.from_numpy(np.asarray(x, dtype)).to(device)
        loss = torch_step(model, (tx,), torch.from_numpy(labels).to(device)).item()
        return StepResult(loss, torch_grads(model, ()), params_from_torch(model)[1])
    params, stats = jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype), params_from_torch(model)
    )
    (loss, new_stats), grads = _jitted("resnet18", framework, activation)(
        params, stats, jnp.asarray(x, dtype), jnp.asarray(labels)
    )
    return StepResult(float(loss), _np(grads), _np(new_stats))


def roi_head_result(
    framework: str,
    features,
    boxes,
    labels,
    activation: str = "silu",
    dtype=np.float32,
    seed: int = 0,
) -> StepResult:
    """One RoI-head step (``"torch"`` or ``"jaxops"``); the map's gradient is
    ``grads["features"]``."""
    import torch

    model = roi_head_torch(features.shape[1], activation, seed=seed)
    if framework == "torch":
        model = model.to(getattr(torch, np.dtype(dtype).name))
        device = next(model.parameters()).device
        tf = torch.from_numpy(np.asarray(features, dtype)).to(device).requires_grad_()
        tb = torch.from_numpy(np.asarray(boxes, dtype)).to(device)
        loss = torch_step(model, (tf, tb), torch.from_numpy(labels).to(device)).item()
        return StepResult(loss, torch_grads(model, (tf,), ("features",)), {})
    if framework != "jaxops":
        raise ValueError(f"the RoI head runs in torch or jaxops, not {framework!r}")
    params = {k: jnp.asarray(v, dtype) for k, v in params_from_torch(model)[0].items()}
    loss, (g_params, g_features) = _jitted("roi_head", framework, activation)(
        params, jnp.asarray(features, dtype), jnp.asarray(boxes, dtype), jnp.asarray(labels)
    )
    return StepResult(float(loss), {**_np(g_params), "features": np.asarray(g_features)}, {})


def rel_err(a, b) -> float:
    """``max|a - b| / max|b|``: the error relative to the leaf's scale (NaN if ``b`` is all 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale else float("nan")


def _leaves(ours: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, float]:
    if set(ours) != set(truth):
        raise ValueError(f"different leaves: {sorted(set(ours) ^ set(truth))}")
    return {k: rel_err(ours[k], truth[k]) for k in truth}


def compare(ours: StepResult, truth: StepResult) -> dict[str, Any]:
    """:func:`rel_err` of the loss, the worst gradient and the worst running statistic.

    Returns:
        ``{"loss", "grads", "grads_worst", "stats", "stats_worst", "leaves"}``:
        the errors, the names of the worst leaves, and every leaf's error
        (running statistics prefixed ``"stats:"``).
    """
    grads = _leaves(ours.grads, truth.grads)
    stats = _leaves(ours.stats, truth.stats)
    worst_g = max(grads, key=grads.get)
    worst_s = max(stats, key=stats.get) if stats else None
    return {
        "loss": rel_err(ours.loss, truth.loss),
        "grads": grads[worst_g],
        "grads_worst": worst_g,
        "stats": stats[worst_s] if stats else None,
        "stats_worst": worst_s,
        "leaves": {**grads, **{f"stats:{k}": v for k, v in stats.items()}},
    }
