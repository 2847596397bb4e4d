"""roi_pool / roi_align semantics the generic registry tests cannot express."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxops
from jaxops.testing import lowering, portable


def _temp_bytes(op, k, shape=(1, 8, 32, 32), out=7):
    """Temporary bytes of the compiled forward and forward+backward programs."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    b = jax.ShapeDtypeStruct((k, 5), jnp.float32)
    f = lambda x, b: op(x, b, out, 0.5)  # noqa: E731
    fwd = jax.jit(f).lower(x, b).compile().memory_analysis().temp_size_in_bytes
    g = jax.jit(jax.grad(lambda x, b: jnp.sum(f(x, b)))).lower(x, b).compile()
    return fwd, g.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("op", [jaxops.roi_pool, jaxops.roi_align])
def test_temp_memory_grows_per_roi_like_outputs_not_like_the_map(op):
    """A masked max / dense sampling over the whole map costs C*out_h*out_w*H*W per RoI
    (~32 GB at the benchmark's K=512, C=256, 50x50, 7x7). Here each extra RoI may cost
    at most a few C*out_h*W-sized rows (roi_align's first contraction), 1/8 of that."""
    n, c, h, w = shape = (1, 8, 32, 32)
    small, big = _temp_bytes(op, 32, shape), _temp_bytes(op, 64, shape)
    naive_per_roi = c * 7 * 7 * h * w * 4
    for mode, lo, hi in zip(("fwd", "fwd+bwd"), small, big):
        assert (hi - lo) / 32 < naive_per_roi / 8, (mode, lo, hi)
        assert hi < 64 * naive_per_roi / 8, (mode, hi)


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_checked_mode_rejects_batch_index_out_of_range(name):
    op = getattr(jaxops, name)
    x = jnp.ones((2, 1, 4, 4))
    bad = jnp.array([[0.0, 0, 0, 2, 2], [2.0, 0, 0, 2, 2]])
    with pytest.raises(
        checkify.JaxRuntimeError,
        match=rf"jaxops\.{name}: boxes batch index \(=2\.0\) is out of range",
    ):
        jaxops.checked(lambda x, b: op(x, b, 2))(x, bad)
    ok = jnp.array([[1.9, 0, 0, 2, 2], [-0.5, 0, 0, 2, 2]])  # truncate to 1 and 0
    jaxops.checked(lambda x, b: op(x, b, 2))(x, ok)


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_unchecked_out_of_range_batch_index_gives_nan_and_no_gradient(name):
    op = getattr(jaxops, name)
    x = jnp.ones((2, 1, 4, 4))
    b = jnp.array([[0.0, 0, 0, 2, 2], [5.0, 0, 0, 2, 2], [-1.0, 0, 0, 2, 2]])
    out = jax.jit(lambda x: op(x, b, 2))(x)
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()
    g = jax.grad(lambda x: jnp.sum(jnp.nan_to_num(op(x, b, 2))))(x)
    assert float(jnp.sum(g[1])) == 0.0 and float(jnp.sum(g)) > 0


def test_roi_pool_round_half_away_from_zero():
    """2.5 rounds to 3 (C round); jnp.round would give 2 and shift the bin."""
    x = jnp.arange(36.0).reshape(1, 1, 6, 6)
    out = jaxops.roi_pool(x, jnp.array([[0, 2.5, 2.5, 2.5, 2.5]]), 1)
    assert float(out[0, 0, 0, 0]) == 3 * 6 + 3


@pytest.mark.parametrize("name", ["roi_pool", "roi_align"])
def test_second_order_and_forward_mode(name):
    op = getattr(jaxops, name)
    x = jax.random.normal(jax.random.key(0), (1, 2, 6, 6))
    b = jnp.array([[0, 0.5, 0.5, 4.5, 3.5], [0, 1, 1, 5, 5]])
    f = lambda x: jnp.sum(op(x, b, 2) ** 2)  # noqa: E731
    hvp = jax.jvp(jax.grad(f), (x,), (jnp.ones_like(x),))[1]
    assert np.isfinite(hvp).all()
    jac = jax.jacfwd(lambda x: op(x, b, 2))(x)
    assert jac.shape == (2, 2, 2, 2, 1, 2, 6, 6)


def test_roi_align_boxes_get_zero_gradient_like_torchvision():
    x = jax.random.normal(jax.random.key(1), (1, 1, 6, 6))
    b = jnp.array([[0, 0.3, 0.7, 4.2, 3.9]])
    g = jax.grad(lambda b: jnp.sum(jaxops.roi_align(x, b, 2)))(b)
    assert float(jnp.abs(g).sum()) == 0.0


# ---------------------------------------------------------------- the two formulations


def _both_formulations(f, *args):
    """``f(*args)`` as XLA:CPU runs it (the CPU-tuned formulation) and under portable()."""
    native = jax.jit(f)(*args)
    with portable():
        ported = jax.jit(f)(*args)
    return native, ported


_POOL_MAP = (24, 20)  # with out (3, 2), the CPU depths are 3x3, 4x4 and 5x5 levels


def _pool_boxes(kind):
    """RoIs (map 24 x 20) for each of the CPU formulation's table depths: bins up to 7
    long (``small``), RoIs inside the map (``inside``), anything (``any``: the whole
    map, beyond every edge, outside). Each set has overlapping, duplicated and .5-corner
    RoIs and a single pixel."""
    h, w = _POOL_MAP
    small = [
        [0, 1, 1, 4, 3],
        [0, 1, 1, 4, 3],  # duplicate: its gradient doubles at the same argmax
        [0, 0, 2, 5, 6],  # overlaps the first two
        [1, 2.5, 3.5, 7.5, 9.5],  # .5 corners (rounded half away from zero)
        [0, 3, 2, 3, 2],  # a single pixel
    ]
    inside = small + [[0, 2, 3, 17, 22], [1, 0, 0, 12, 23]]
    anywhere = inside + [
        [1, 0, 0, w - 1, h - 1],  # the whole map
        [1, -3, -2, w + 4, h + 5],  # beyond every edge: bins clipped to the map
        [0, -40, -40, w + 40, h + 40],  # its middle bins span the map (the full depth)
        [0, w + 2, h + 2, w + 9, h + 9],  # outside: empty bins
    ]
    return jnp.array({"small": small, "inside": inside, "any": anywhere}[kind], jnp.float32)


@pytest.mark.parametrize("kind", ["small", "inside", "any"])
def test_roi_pool_formulations_agree_exactly_with_ties_and_overlaps(kind):
    """The portable formulation (the full-depth table, unrolled) and the CPU one (a
    scanned table as shallow as the bins allow) give the same maxima, and the same
    argmax (the first in row-major order) receives the same accumulated gradient."""
    h, w = _POOL_MAP
    x = jax.random.randint(jax.random.key(2), (2, 3, h, w), -2, 3).astype(jnp.float32)  # many ties
    x = x.at[0, 0, 4:7, 2:5].set(jnp.nan).at[1, 1, :, 3].set(-jnp.inf)
    boxes, out = _pool_boxes(kind), (3, 2)
    cot = jax.random.normal(jax.random.key(3), (boxes.shape[0], 3, *out))

    def f(x):
        y, vjp = jax.vjp(lambda x: jaxops.roi_pool(x, boxes, out), x)
        return y, vjp(cot)[0]

    (y_cpu, g_cpu), (y_port, g_port) = _both_formulations(f, x)
    np.testing.assert_array_equal(y_port, y_cpu)
    np.testing.assert_array_equal(g_port, g_cpu)
    assert float(jnp.abs(g_cpu).sum()) > 0


def test_roi_pool_portable_formulation_has_no_loop_and_one_scatter():
    """Lowered for GPU: the table is unrolled (no while), its depth static (no case); the
    gradient's one scatter-add is the accumulation at the argmax."""
    x = jnp.zeros((2, 3, *_POOL_MAP))
    boxes = _pool_boxes("any")

    def f(x):
        return jaxops.roi_pool(x, boxes, 2)

    fwd = lowering.op_counts(lowering.lowered_text(f, x, platform="cuda"))
    grad = lowering.op_counts(
        lowering.lowered_text(jax.grad(lambda x: f(x).sum()), x, platform="cuda")
    )
    assert (fwd["while"], fwd["case"], fwd["scatter"]) == (0, 0, 0), fwd
    assert (grad["while"], grad["case"], grad["scatter"]) == (0, 0, 1), grad
    cpu = lowering.op_counts(lowering.lowered_text(f, x, platform="cpu"))
    assert cpu["while"] > 0 and cpu["case"] == 1, cpu  # the CPU formulation is untouched


def _specials_map():
    x = jax.random.normal(jax.random.key(4), (2, 3, 8, 9))
    x = (
        x.at[0, 0, 1, 2].set(jnp.nan).at[0, 0, 0, 0].set(jnp.inf)
    )  # (0, 0): what out-of-map samples read
    x = (
        x.at[1, 2, 2, 1].set(-jnp.inf).at[0, 1, 7, 8].set(jnp.inf)
    )  # the clamped bottom-right corner
    return x.at[1, 0, 3, 3].set(jnp.nan).at[0, 2, 5, 5].set(jnp.inf).at[0, 2, 5, 6].set(-jnp.inf)


_ALIGN_BOXES = jnp.array(
    [
        [0, 0.5, 0.5, 4.5, 3.5],
        [1, -0.5, -1.5, 2.5, 6.5],
        [0, 1.0, 1.0, 6.0, 5.0],
        [0, 4.0, 4.0, 7.0, 6.0],  # reads the +inf and -inf at (5, 5), (5, 6)
        [1, 20.0, 20.0, 30.0, 25.0],  # outside: reads pixel (0, 0) times 0
        [0, -9.0, -9.0, -3.0, -2.0],
        [1, 0.0, 0.0, 8.0, 7.0],
        [0, -2.0, 4.0, 12.0, 9.5],
        [0, 2.0, 0.0, 2.0, 0.0],  # zero-size: samples on pixel rows, zero factors
    ],
    jnp.float32,
)


@pytest.mark.parametrize("kwargs", [{}, {"sampling_ratio": 2, "aligned": True}])
def test_roi_align_portable_nan_inf_pattern_without_a_branch(kwargs):
    """The portable formulation computes the NaN/inf pattern unconditionally (no cond):
    it matches the CPU formulation's (behind a cond) exactly, output and gradient, and
    a finite map keeps exactly the plain linear map's values."""
    x = _specials_map()

    def f(x):
        return jaxops.roi_align(x, _ALIGN_BOXES, (3, 2), 1.0, **kwargs)

    g = jax.grad(lambda x: jnp.sum(jnp.nan_to_num(f(x))))
    (y_cpu, g_cpu), (y_port, g_port) = _both_formulations(lambda x: (f(x), g(x)), x)
    np.testing.assert_array_equal(np.isnan(y_port), np.isnan(y_cpu))
    np.testing.assert_array_equal(np.isposinf(y_port), np.isposinf(y_cpu))
    np.testing.assert_array_equal(np.isneginf(y_port), np.isneginf(y_cpu))
    assert np.isnan(y_cpu).any() and np.isinf(y_cpu).any()
    np.testing.assert_allclose(y_port, y_cpu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_port, g_cpu, rtol=1e-6, atol=1e-6)
    finite = jnp.nan_to_num(x, nan=0.5, posinf=2.0, neginf=-2.0)
    assert np.isfinite(jax.jit(f)(finite)).all()
    counts = lowering.op_counts(lowering.lowered_text(f, x, platform="cuda"))
    assert (counts["while"], counts["case"], counts["scatter"]) == (0, 0, 0), counts


@pytest.mark.parametrize("precision", ["default", jax.lax.DotAlgorithmPreset.BF16_BF16_F32])
def test_roi_align_nan_inf_pattern_does_not_depend_on_precision(precision):
    """The pattern's contractions multiply 0/1 flags (in bfloat16), exact at any
    precision setting or algorithm. (XLA:CPU computes the float32 contractions in
    float32 whatever they ask for, so the values cannot move here; on GPU/TPU they
    do, the pattern does not.)"""
    x = _specials_map()
    with portable():
        ref = jaxops.roi_align(x, _ALIGN_BOXES, 3)
        low = jaxops.roi_align(x, _ALIGN_BOXES, 3, precision=precision)
    for check in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(check(low), check(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(low[finite], ref[finite], rtol=1e-2, atol=1e-2)


def test_roi_align_precision_is_keyword_only_and_checked():
    x = jnp.ones((1, 1, 4, 4))
    b = jnp.array([[0.0, 0, 0, 2, 2]])
    with pytest.raises(TypeError):
        jaxops.roi_align(x, b, 1, 1.0, -1, False, "highest")
    with pytest.raises(TypeError, match=r"jaxops\.roi_align: precision must be"):
        jaxops.roi_align(x, b, 1, precision="fastest")
    for p in (None, "highest", jax.lax.Precision.HIGH, ("high", "highest")):
        np.testing.assert_allclose(jaxops.roi_align(x, b, 1, sampling_ratio=2, precision=p), 1.0)


@pytest.mark.parametrize("kwargs", [{}, {"sampling_ratio": 2, "aligned": True}])
@pytest.mark.parametrize("form", ["cpu", "portable"])
def test_roi_align_in_small_chunks_matches_one_chunk(form, kwargs, monkeypatch):
    """roi_align runs its RoIs in chunks (CPU: of one image each; portable: only past a
    memory bound). With chunks of 2 RoIs (image 0 holds six RoIs, image 1 three, so
    the CPU layout has full, half-filled and unused chunks), the output, its NaN/inf
    pattern and the gradient are those of one chunk per image (CPU) or of all RoIs
    at once (portable)."""
    from jaxops import roi
    from jaxops._cpu import roi as cpu_roi

    x, out = _specials_map(), (3, 2)
    cot = jax.random.normal(jax.random.key(5), (_ALIGN_BOXES.shape[0], 3, *out))

    def run():
        jax.clear_caches()  # the chunk size is read when roi_align is traced
        with portable() if form == "portable" else contextlib.nullcontext():
            y, vjp = jax.vjp(lambda x: jaxops.roi_align(x, _ALIGN_BOXES, out, 1.0, **kwargs), x)
            g = vjp(jnp.where(jnp.isfinite(y), cot, 0))[0]
            text = lowering.lowered_text(
                lambda x: jaxops.roi_align(x, _ALIGN_BOXES, out, 1.0, **kwargs), x, platform="cpu"
            )
        return y, g, text

    def laid_out(text, chunks, size):  # the (chunks, size, out_h, H) interpolation rows
        return f"tensor<{chunks}x{size}x{out[0]}x{x.shape[2]}xf32>" in text

    k, images = _ALIGN_BOXES.shape[0], 2
    y_one, g_one, text = run()
    assert laid_out(text, images, k) if form == "cpu" else laid_out(text, 1, k)
    two_rois = 2 * out[0] * x.shape[1] * x.shape[3] * 4  # bytes of a 2-RoI intermediate
    monkeypatch.setattr(cpu_roi, "ALIGN_CHUNK_BYTES", two_rois)
    monkeypatch.setattr(roi, "_ALIGN_CHUNK_BYTES", two_rois)
    try:
        y, g, text = run()
    finally:
        jax.clear_caches()
    chunks = -(-k // 2) + (images - 1 if form == "cpu" else 0)
    assert laid_out(text, chunks, 2) and "stablehlo.while" in text
    for check in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(check(y), check(y_one))
    assert np.isnan(y_one).any() and np.isinf(y_one).any()
    np.testing.assert_allclose(y, y_one, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, g_one, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(g_one).sum()) > 0


def test_roi_align_vmapped_over_maps_and_boxes_differentiates():
    """vmap over maps and boxes batches the CPU layout of RoIs (which chunks are used
    differs per example) and reverse mode transposes it (the vjp of the vmapped op):
    the gradient equals each example's own."""
    maps = jax.random.normal(jax.random.key(6), (4, 2, 3, 8, 9))
    boxes = jnp.stack([_ALIGN_BOXES.at[:, 0].set(jnp.arange(9) % (i + 1) % 2) for i in range(4)])
    cot = jax.random.normal(jax.random.key(7), (4, 9, 3, 3, 2))

    def grad_of(x, b, c):
        return jax.vjp(lambda x: jaxops.roi_align(x, b, (3, 2), 1.0), x)[1](c)[0]

    vmapped = jax.vmap(lambda x, b: jaxops.roi_align(x, b, (3, 2), 1.0))
    batched = jax.vjp(lambda x: vmapped(x, boxes), maps)[1](cot)[0]  # vjp of the vmap
    for i in range(4):
        np.testing.assert_allclose(
            batched[i], grad_of(maps[i], boxes[i], cot[i]), rtol=1e-6, atol=1e-6
        )
    assert len({tuple(np.asarray(b[:, 0])) for b in boxes}) > 1  # the layouts do differ
