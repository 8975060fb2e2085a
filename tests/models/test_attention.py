"""The attention kernels (models/attention.py) against the plain kernel on the same random inputs, the plain
kernel against the formula in float64, and `select_kernel` against every row of the module's table; then which
kernel the blocks of a model take, and that the model computes the same numbers whichever it takes."""

import dataclasses
import re

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import ops
from tests.models.helpers import SMALL_ARCH, classifier, clip, record_kernels, xla_training_step
from video_swin.models import attention, window_ops
from video_swin.models.attention import Choice
from video_swin.models.layers import WindowAttention3D
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

NW, BATCH, HEADS, N, D = 4, 2, 3, 12, 8  # windows per clip, clips, heads, tokens per window, head size


def _attention_inputs(dtype="float32", masked=True, seed=5):
    """q, k, v (BATCH * NW, HEADS, N, D) in `dtype`; bias (HEADS, N, N) and a mask of 0 / -100 (NW, N, N) in
    float32; an upstream gradient like the output."""
    rng = np.random.default_rng(seed)
    q, k, v = (tf.constant(rng.standard_normal((BATCH * NW, HEADS, N, D)), dtype) for _ in range(3))
    bias = tf.constant(rng.standard_normal((HEADS, N, N)).astype("float32"))
    mask = tf.constant(np.where(rng.random((NW, N, N)) < 0.3, window_ops.MASK_VALUE, 0.0).astype("float32"))
    upstream = tf.constant(rng.standard_normal((BATCH * NW, HEADS, N, D)), dtype)
    return q, k, v, bias, mask if masked else None, upstream


def _attention_in_float64(q, k, v, bias, mask=None):
    """softmax(q kT + bias + mask) v in NumPy float64, the mask repeating over the clips."""
    q, k, v, bias = (np.asarray(t, "float64") for t in (q, k, v, bias))
    scores = q @ k.transpose(0, 1, 3, 2) + bias
    if mask is not None:
        scores += np.tile(np.asarray(mask, "float64"), (len(q) // len(mask), 1, 1))[:, None]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)) @ v


def _bounds(bias):
    return ops.min(bias, axis=(1, 2)), ops.max(bias, axis=(1, 2))


def _bounded(q, k, v, bias, mask=None):
    assert mask is None
    return attention.bounded_offsets(q, k, v, bias, *_bounds(bias))


# Each kernel against `plain`.


@pytest.mark.parametrize("masked", [False, True])
def test_plain_is_the_softmax_formula_in_float64(masked):
    q, k, v, bias, mask, _ = _attention_inputs(masked=masked)
    got = np.asarray(attention.plain(q, k, v, bias, mask))
    np.testing.assert_allclose(got, _attention_in_float64(q, k, v, bias, mask), rtol=1e-5, atol=1e-5)
    if masked:  # the mask matters: the same inputs without it give other numbers
        assert np.abs(got - np.asarray(attention.plain(q, k, v, bias))).max() > 1e-2


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 2e-3), ("bfloat16", 1.6e-2)])
def test_recomputing_gives_the_outputs_and_gradients_of_plain(masked, dtype, tol):
    """Forward bit for bit; gradients in half precision within two steps of the dtype (2^-10, 2^-7 relative):
    the backward pass computes them in another order than automatic differentiation of `plain` does."""
    q, k, v, bias, mask, upstream = _attention_inputs(dtype, masked)
    results = []
    for fn in (attention.plain, attention.recomputing):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v, bias])
            out = fn(q, k, v, bias, mask)
            loss = tf.reduce_sum(tf.cast(out * upstream, "float32"))
        results.append((out.numpy(), [g.numpy() for g in tape.gradient(loss, [q, k, v, bias])]))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    for recomputed, plain in zip(results[1][1], results[0][1]):
        assert recomputed.dtype == plain.dtype
        np.testing.assert_allclose(recomputed.astype("float32"), plain.astype("float32"), rtol=tol, atol=tol)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_bounded_offsets_equals_plain(jit_compile):
    """Taken for unmasked windows in float32 inference only: forward, no mask, float32."""
    q, k, v, bias, _, _ = _attention_inputs(masked=False)
    q, bias = q * 3.0, bias * 4.0  # scores spread over tens, a bias of several units
    run = (lambda fn: tf.function(fn, jit_compile=True)) if jit_compile else (lambda fn: fn)
    plain = np.asarray(run(attention.plain)(q, k, v, bias))
    np.testing.assert_allclose(np.asarray(run(_bounded)(q, k, v, bias)), plain, rtol=1e-5, atol=1e-5)


def _wide_bias_inputs():
    """Token 0 of window 0, head 0 scores 30 with token 5 before the bias, whose bias there is -60; elsewhere
    scores are within a few units of 0, and the bias is 0 but for one +60."""
    q, k, v, _, _, _ = _attention_inputs("float32", masked=False)
    q, k = (np.array(t) * 0.1 for t in (q, k))
    q[0, 0, 0], k[0, 0, 5] = np.eye(8)[0] * 10.0, np.eye(8)[0] * 3.0
    bias = np.zeros((3, 12, 12), "float32")
    bias[0, 0, 5], bias[0, 1, 1] = -60.0, 60.0
    return tf.constant(q), tf.constant(k), v, tf.constant(bias)


@pytest.mark.parametrize("inputs", ["several units", "wider than the gap"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_bounded_offsets_is_as_close_to_float64_as_plain(inputs, jit_compile):
    """Against float64 at the parity tests' tolerance, as the plain kernel is (their float32 roundings differ by
    ~2e-6 at these scales; each is ~2e-6 from float64). Scores spread over tens and a bias of several units
    (the offsets lie units above the row maxima); and a bias spanning 120 > OFFSET_GAP, where the raw row
    maximum plus the bias maximum would put row 0's offset 90 above its maximum and every term would
    underflow to 0."""
    if inputs == "several units":
        q, k, v, bias, _, _ = _attention_inputs("float32", masked=False)
        q, bias = q * 3.0, bias * 4.0
    else:
        q, k, v, bias = _wide_bias_inputs()
    truth = _attention_in_float64(q, k, v, bias)
    for fn in (attention.plain, _bounded):
        got = np.asarray((tf.function(fn, jit_compile=True) if jit_compile else fn)(q, k, v, bias))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, truth, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kernel, masked, dtype, tol",
    [
        ("plain", True, "float32", 1e-6),  # what compiled float32 graphs take for shifted windows
        ("plain", False, "float32", 1e-6),  # ... with settings.bounded_offsets off
        ("bounded_offsets", False, "float32", 1e-6),  # ... for unshifted windows
        ("plain", True, "float16", 1e-3),  # mixed precision on the CPU
        ("plain", False, "float16", 1e-3),
    ],
)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_window_groups_equal_all_windows_at_once(kernel, masked, dtype, tol, jit_compile):
    """Groups of 2 windows of a clip's 4 (the mask of each window found through its group), in compiled graphs
    as the grouping runs: the same numbers as the kernel on all windows at once, up to the rounding of another
    batching of the same matmuls (float32: 1e-6; float16: about one float16 step of the outputs)."""
    q, k, v, bias, mask, _ = _attention_inputs(dtype, masked)
    attend = {"plain": attention.plain, "bounded_offsets": _bounded}[kernel]
    grouped = tf.function(lambda *t: attention.in_window_groups(attend, *t, mask, 2, NW), jit_compile=jit_compile)
    at_once = tf.function(lambda *t: attend(*t, mask), jit_compile=jit_compile)
    want = np.asarray(at_once(q, k, v, bias)).astype("float32")
    np.testing.assert_allclose(np.asarray(grouped(q, k, v, bias)).astype("float32"), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 4e-3), ("bfloat16", 3e-2)])
def test_fused_equals_plain(shifted, dtype, tol):
    """`fused` (taken on JAX GPUs in half precision) folds the windows of a clip into the heads axis so that the
    shift mask becomes one broadcast bias; here through the backend's reference `dot_product_attention` it must
    equal `plain` window by window: in float32 at 1e-5, and in half precision within 4 steps of the dtype
    (float16 2^-10, bfloat16 2^-7: `fused` rounds the bias and mask to the dtype, `plain` keeps them in
    float32)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32" if dtype == "float32" else f"mixed_{dtype}")
    try:
        layer = WindowAttention3D(24, 2, (2, 3, 3))
        n, batch, nw = 18, 3, 8
        padded, shift = (4, 6, 6), ((1, 1, 1) if shifted else (0, 0, 0))
        mask = np.asarray(window_ops.shifted_window_mask(padded, (2, 3, 3), shift)) if shifted else None
        x = np.random.default_rng(1).standard_normal((batch * nw, n, 24)).astype("float32")  # (windows, n, C)
        layer(x)
        qkv = ops.reshape(layer.qkv(ops.cast(x, dtype)), (-1, n, 3, 2, 12))
        bias = layer.relative_position_bias(n)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(qkv.dtype) == dtype
    mask = None if mask is None else ops.convert_to_tensor(mask)
    fused = np.asarray(attention.fused(qkv, bias, mask, scale=layer.scale)).astype("float32")
    t = ops.transpose(qkv, (2, 0, 3, 1, 4))
    plain = attention.plain(t[0] * ops.cast(layer.scale, dtype), t[1], t[2], bias, mask)
    plain = np.asarray(ops.transpose(plain, (0, 2, 1, 3))).astype("float32")
    np.testing.assert_allclose(fused, plain, rtol=tol, atol=tol)
    if shifted:
        assert np.abs(np.asarray(mask)).max() > 0  # the mask is not all zeros: the folding is exercised


# The choice.

# Swin-T at 16x224x224, inference of one clip in a compiled graph on the CPU: stage 1's blocks (64 windows of
# 392 tokens, 3 heads), unshifted.
STAGE_1 = dict(backend="tensorflow", on_cpu=True, dtype="float32", training=False, attention_dropout=False,
               masked=False, traced=True, windows=64, heads=3, n=392, num_windows=64)
STAGE_2 = dict(STAGE_1, windows=16, heads=6, num_windows=16)
STAGE_3 = dict(STAGE_1, windows=4, heads=12, num_windows=4)  # scores of a clip 29.5 MB: below 32 MiB
JAX_GPU = dict(STAGE_1, backend="jax", on_cpu=False, dtype="bfloat16")

KERNEL_TABLE = [
    # (row of the table, facts, settings, expected)
    ("plain: eager", dict(STAGE_1, traced=False), {}, Choice("plain")),
    ("plain: eager PyTorch", dict(STAGE_1, backend="torch", traced=False), {}, Choice("plain")),
    ("plain: exported graph (dynamic batch)", dict(STAGE_1, windows=None), {}, Choice("plain")),
    ("plain: dynamic sizes", dict(STAGE_1, windows=None, n=None, num_windows=None), {}, Choice("plain")),
    ("plain: masked, small clip", dict(STAGE_3, masked=True), {}, Choice("plain")),
    ("plain: TensorFlow on a GPU", dict(STAGE_1, on_cpu=False), {}, Choice("plain")),
    ("plain: JAX on a GPU in float32", dict(JAX_GPU, dtype="float32"), {}, Choice("plain")),
    ("plain: TensorFlow on a GPU in half", dict(JAX_GPU, backend="tensorflow"), {}, Choice("plain")),
    ("plain: training with attention dropout", dict(STAGE_1, training=True, windows=128, attention_dropout=True),
     {}, Choice("plain")),
    ("plain: training, Swin-T stage 2 at batch 2 (118 MB)", dict(STAGE_2, training=True, windows=32), {},
     Choice("plain")),
    ("recomputing: training, Swin-T stage 1 at batch 2 (236 MB)", dict(STAGE_1, training=True, windows=128), {},
     Choice("recomputing")),
    ("recomputing: training, stage 2 below a lower threshold", dict(STAGE_2, training=True, windows=32),
     {"recompute_probabilities_above_bytes": 100 * 2**20}, Choice("recomputing")),
    ("recomputing: training, dynamic batch", dict(STAGE_3, training=True, windows=None), {}, Choice("recomputing")),
    ("recomputing: training, eager, masked", dict(STAGE_1, training=True, traced=False, masked=True, windows=128),
     {}, Choice("recomputing")),
    ("recomputing: training on a JAX GPU in half", dict(JAX_GPU, training=True, windows=128), {},
     Choice("recomputing")),
    ("bounded_offsets: unmasked, float32, compiled for the CPU, small clip", STAGE_3, {}, Choice("bounded_offsets")),
    ("bounded_offsets: setting off", STAGE_3, {"bounded_offsets": False}, Choice("plain")),
    ("bounded_offsets: not in float16", dict(STAGE_3, dtype="float16"), {}, Choice("plain")),
    ("bounded_offsets: windows per clip unknown", dict(STAGE_1, num_windows=None), {}, Choice("bounded_offsets")),
    ("window groups: stage 1 (118 MB per clip), groups of 2", STAGE_1, {}, Choice("bounded_offsets", 2)),
    ("window groups: stage 1 masked", dict(STAGE_1, masked=True), {}, Choice("plain", 2)),
    ("window groups: stage 1 at batch 2", dict(STAGE_1, windows=128), {}, Choice("bounded_offsets", 2)),
    ("window groups: stage 2 (59 MB per clip), groups of 1", dict(STAGE_2, masked=True), {}, Choice("plain", 1)),
    ("window groups: mixed float16 on the CPU", dict(STAGE_1, dtype="float16"), {}, Choice("plain", 2)),
    ("window groups: a larger group budget", STAGE_1, {"group_bytes": 16 * 2**20}, Choice("bounded_offsets", 8)),
    ("window groups: all windows fit one group", STAGE_1, {"group_bytes": 2**30}, Choice("bounded_offsets")),
    ("window groups: a higher threshold", STAGE_1, {"grouping_above_bytes": 2**30}, Choice("bounded_offsets")),
    ("window groups: JAX on the CPU", dict(STAGE_1, backend="jax", masked=True), {}, Choice("plain", 2)),
    ("fused: JAX GPU bfloat16 inference", JAX_GPU, {}, Choice("fused")),
    ("fused: JAX GPU float16, masked, eager", dict(JAX_GPU, dtype="float16", masked=True, traced=False), {},
     Choice("fused")),
    ("fused: setting off", JAX_GPU, {"fused_attention": False}, Choice("plain")),
    ("fused: not on a CPU (there: window groups)", dict(JAX_GPU, on_cpu=True), {}, Choice("plain", 2)),
]


@pytest.mark.parametrize("facts, changes, expected", [row[1:] for row in KERNEL_TABLE],
                         ids=[row[0] for row in KERNEL_TABLE])
def test_select_kernel(facts, changes, expected):
    with attention.configured(**changes):
        assert attention.select_kernel(**facts) == expected
    assert attention.settings == attention.Settings()  # restored


def test_the_table_covers_every_kernel_and_setting():
    chosen = {expected.kernel for _, _, _, expected in KERNEL_TABLE}
    assert chosen == set(attention.KERNELS)
    assert any(expected.windows_per_group for _, _, _, expected in KERNEL_TABLE)
    changed = {name for _, _, changes, _ in KERNEL_TABLE for name in changes}
    assert changed == {field.name for field in dataclasses.fields(attention.Settings)}
    with pytest.raises(TypeError, match="no attention setting 'fused'"):
        with attention.configured(fused=False):
            pass


# The kernels a model takes, and its numbers whichever it takes.


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of 2 windows for the small architecture (heads 2, 36 tokens per window), and a list of the group
    sizes of the grouped calls."""
    calls = []
    original = attention.in_window_groups

    def spy(attend, q, k, v, bias, mask, windows_per_group, num_windows):
        calls.append(windows_per_group)
        return original(attend, q, k, v, bias, mask, windows_per_group, num_windows)

    monkeypatch.setattr(attention.settings, "group_bytes", 2 * 4 * 2 * 36**2)
    monkeypatch.setattr(attention.settings, "grouping_above_bytes", 0)
    monkeypatch.setattr(attention, "in_window_groups", spy)
    return calls


@pytest.mark.parametrize("jit_compile", [False, True])
def test_grouped_attention_in_graphs_equals_eager(small_groups, jit_compile):
    model = classifier()
    x = clip((2, 10, 40, 36), 1)  # shifted windows with masks, padding in both stages, batch 2
    graph = tf.function(lambda v: model(v, training=False), jit_compile=jit_compile)
    got = graph(x).numpy()
    assert 2 in small_groups  # the grouped path was traced (groups of 2 windows in stage 1)
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-5, atol=1e-6)


def test_training_eager_and_export_graphs_take_the_plain_path(small_groups):
    model = classifier()
    x = clip((1, 6, 20, 18), 2)
    model(x)
    model(x, training=True)
    tf.function(lambda v: model(v, training=True))(x)
    # Exported graphs keep the batch dynamic (export.make_function): no loop in them.
    spec = tf.TensorSpec((None, 6, 20, 18, 3), tf.float32)
    tf.function(lambda v: model(v, training=False), input_signature=[spec]).get_concrete_function()
    assert not small_groups


def test_probabilities_are_recomputed_under_xla(monkeypatch):
    """XLA merges an expression that the backward pass repeats from the forward's with the forward's and keeps
    that alive: the recomputation must survive as a second softmax (one more exponential) per block."""
    x, y = clip((2, 8, 24, 24), 9), np.array([0, 3])
    exponentials = {}
    for threshold in (2**62, 0):
        monkeypatch.setattr(attention.settings, "recompute_probabilities_above_bytes", threshold)
        keras.utils.set_random_seed(0)
        model = classifier()
        hlo = xla_training_step(model).experimental_get_compiler_ir(x, y)(stage="optimized_hlo")
        exponentials[threshold] = len(re.findall(r"\} exponential\(", hlo))
    assert exponentials[0] == exponentials[2**62] + sum(SMALL_ARCH["depths"])


def test_probabilities_are_recomputed_only_in_training_where_they_are_large(monkeypatch):
    calls = []
    recompute = attention.recomputing
    monkeypatch.setattr(attention, "recomputing", lambda *a: calls.append(1) or recompute(*a))
    model, x = classifier(), clip((2, 8, 24, 24), 9)
    model(x, training=True)
    assert calls == []  # a few kB of probabilities per block: kept
    monkeypatch.setattr(attention.settings, "recompute_probabilities_above_bytes", 0)
    model(x, training=False)
    assert calls == []
    model(x, training=True)
    assert len(calls) == sum(SMALL_ARCH["depths"])
    dropout = VideoSwinClassifier(VideoSwinBackbone(**{**SMALL_ARCH, "attn_dropout": 0.1}), num_classes=5)
    calls.clear()
    dropout(x, training=True)
    assert calls == []  # the probabilities' dropout mask would have to be kept or replayed: plain path
    # Swin-T at batch 2 x 16x224x224: stage 1's probabilities (236 MB per block) are recomputed, stage 2's
    # (118 MB) kept, at the default threshold.
    monkeypatch.undo()
    assert attention.select_kernel(**dict(STAGE_1, training=True, windows=2 * 64)).kernel == "recomputing"
    assert attention.select_kernel(**dict(STAGE_2, training=True, windows=2 * 16)).kernel == "plain"


def test_bounded_offsets_only_for_unmasked_windows_in_float32_inference_compiled_for_the_cpu(monkeypatch):
    taken = record_kernels(monkeypatch)
    bounded = lambda: [path for path, _, choice in taken if choice.kernel == "bounded_offsets"]  # noqa: E731
    model, x = classifier(), clip((2, 8, 24, 24), 9)
    taken.clear()  # the functional model's construction
    model(x)
    model(x, training=True)
    tf.function(lambda v: model(v, training=True))(x)
    spec = tf.TensorSpec((None, 8, 24, 24, 3), tf.float32)  # an exported graph: dynamic batch
    tf.function(lambda v: model(v, training=False), input_signature=[spec]).get_concrete_function()
    assert len(taken) == 4 * 4 and bounded() == []
    for run in (tf.function(lambda v: model(v, training=False)), model.predict_on_batch):
        taken.clear()
        run(x)
        # Stage 1 (4 x 6 x 6 tokens, window 4 x 3 x 3) shifts in space; stage 2 (4 x 3 x 3) does not.
        assert [not facts["masked"] for _, facts, _ in taken] == [True, False, True, True]
        assert len(bounded()) == 3
    monkeypatch.setattr(attention.settings, "bounded_offsets", False)
    taken.clear()
    tf.function(lambda v: model(v, training=False))(x)
    assert len(taken) == 4 and bounded() == []
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = classifier()
        taken.clear()
        tf.function(lambda v: half(v, training=False))(x)
    finally:
        keras.config.set_dtype_policy("float32")
    assert len(taken) == 4 and bounded() == []
