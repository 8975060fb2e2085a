"""The performance paths compute what the plain path computes: cached static masks, attention over
groups of windows in compiled graphs, and XLA in `predict`. (Benchmarks live in benchmarks/, not here.)"""

import contextlib
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import ops
from tests import reference
from video_swin.checkpoints import weights
from video_swin.models import window_ops
from video_swin.models.layers import WindowAttention3D
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

SMALL_ARCH = dict(reference.SMALL_ARCHITECTURE, drop_path_rate=0.0)
PARITY = 1e-5  # rtol = atol against torchvision, as in test_model_parity.py


def _classifier(seed=0):
    """Built from its own seed: the weights do not depend on which tests ran before."""
    keras.utils.set_random_seed(seed)
    return VideoSwinClassifier(VideoSwinBackbone(**SMALL_ARCH), num_classes=5)


def _clip(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(tuple(shape) + (3,)).astype("float32")


@pytest.mark.parametrize(
    "padded,window,shift",
    [((16, 56, 56), (8, 7, 7), (4, 3, 3)), ((8, 14, 21), (8, 7, 7), (0, 3, 3)), ((6, 12, 9), (2, 4, 3), (1, 2, 0))],
)
def test_cached_static_mask_equals_the_tensor_formulation(padded, window, shift):
    static = np.asarray(window_ops.shifted_window_mask(padded, window, shift))
    dynamic = window_ops.shifted_window_mask(tuple(ops.convert_to_tensor(v) for v in padded), window, shift)
    np.testing.assert_array_equal(static, np.asarray(dynamic))
    assert window_ops.shifted_window_mask(padded, window, shift) is window_ops.shifted_window_mask(padded, window, shift)


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of 2 windows for the small architecture (heads 2, 36 tokens per window), and a count of
    grouped calls."""
    calls = []
    original = WindowAttention3D._attend_in_groups

    def spy(self, *args, **kwargs):
        calls.append(args[5])  # the group size
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WindowAttention3D, "GROUP_BYTES", 2 * 4 * 2 * 36**2)
    monkeypatch.setattr(WindowAttention3D, "GROUPING_ABOVE_BYTES", 0)
    monkeypatch.setattr(WindowAttention3D, "_attend_in_groups", spy)
    return calls


@pytest.mark.parametrize("jit_compile", [False, True])
def test_grouped_attention_in_graphs_equals_eager(small_groups, jit_compile):
    model = _classifier()
    x = _clip((2, 10, 40, 36), 1)  # shifted windows with masks, padding in both stages, batch 2
    graph = tf.function(lambda v: model(v, training=False), jit_compile=jit_compile)
    got = graph(x).numpy()
    assert 2 in small_groups  # the grouped path was traced (groups of 2 windows in stage 1)
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-5, atol=1e-6)


def test_training_eager_and_export_graphs_take_the_plain_path(small_groups):
    model = _classifier()
    x = _clip((1, 6, 20, 18), 2)
    model(x)
    model(x, training=True)
    tf.function(lambda v: model(v, training=True))(x)
    # Exported graphs keep the batch dynamic (export.make_function): no loop in them.
    spec = tf.TensorSpec((None, 6, 20, 18, 3), tf.float32)
    tf.function(lambda v: model(v, training=False), input_signature=[spec]).get_concrete_function()
    assert not small_groups


def test_predict_is_compiled_by_xla_and_equals_eager():
    model = _classifier()
    assert model.inference_jit_compile == "auto"
    for i, shape in enumerate([(2, 10, 40, 36), (1, 5, 33, 47)]):
        x = _clip(shape, 10 + i)
        np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert model._inference_uses_xla()
    x = _clip((1, 4, 16, 16), 3)
    assert "HloModule" in model._xla_functions()[0].experimental_get_compiler_ir(x)(stage="hlo")
    assert model.jit_compile is False  # not compiled: Keras resolves "auto" to False on a CPU-only host
    model.inference_jit_compile = False
    model.predict_function = None
    assert not model._inference_uses_xla()
    np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("background_difference", [False, True])
def test_the_compiled_stages_chain_to_the_backbone(background_difference):
    """`predict_on_batch` (one XLA function per stage) and the eager backbone against torchvision's
    backbone computed in float64, at the parity tolerance. Not XLA against eager at rtol 1e-5 / atol 1e-6:
    the features are of size ~4, where float32 resolves ~5e-7, and over 20 random models torch's float32,
    our eager and our XLA features were each up to 2.3e-6 from float64 and XLA up to 2.8e-6 from eager."""
    torch_reference = reference.randomized_small_reference(seed=7)
    backbone = VideoSwinBackbone(**SMALL_ARCH, background_difference=background_difference)
    official = {name: value.numpy() for name, value in reference.official_state_dict(torch_reference).items()}
    weights.load_official_weights(VideoSwinClassifier(backbone, num_classes=5), official)
    x = _clip((1, 6, 20, 18), 12)
    torch_input = x.astype("float64")
    if background_difference:  # the stem's definition (layers.BackgroundDifference), in float64
        torch_input = np.abs(torch_input - np.median(torch_input[:, ::2, ::8, ::8], axis=(1, 2, 3), keepdims=True))
        torch_input -= 0.15
    expected = reference.run_reference(torch_reference.double(), torch_input, features=True)
    assert len(backbone._xla_functions()) == len(SMALL_ARCH["depths"])
    np.testing.assert_allclose(backbone.predict_on_batch(x), expected, rtol=PARITY, atol=PARITY)
    np.testing.assert_allclose(np.asarray(backbone(x)), expected, rtol=PARITY, atol=PARITY)
    with pytest.raises(ValueError, match="uint8"):
        backbone.predict_on_batch(x.astype("uint8"))


class _RecordedFunction:
    """A compiled stage that records when it is traced and run, and on which thread; `on_trace` and
    `before_run` are called first."""

    def __init__(self, fn, index, events, on_trace=None, before_run=None):
        self.fn, self.index, self.events = fn, index, events
        self.on_trace, self.before_run = on_trace or (lambda: None), before_run or (lambda: None)

    def get_concrete_function(self, *args):
        self.on_trace()
        self.events.append(("trace", self.index, threading.current_thread() is threading.main_thread()))
        return self.fn.get_concrete_function(*args)

    def __call__(self, x):
        self.before_run()
        self.events.append(("run", self.index, threading.current_thread() is threading.main_thread()))
        return self.fn(x)

    def experimental_get_tracing_count(self):
        return self.fn.experimental_get_tracing_count()


def test_a_new_shape_traces_each_stage_while_the_one_before_compiles_and_runs():
    model = _classifier()
    fns = model._xla_functions()
    next_traced = threading.Event()
    events = []
    # The first stage's run waits for the second stage's trace to begin: without tracing ahead it
    # would wait out the timeout and run after it.
    model._xla_forward_holder.fns = [
        _RecordedFunction(fns[0], 0, events, before_run=lambda: next_traced.wait(timeout=30)),
        _RecordedFunction(fns[1], 1, events, on_trace=next_traced.set),
    ]
    x = _clip((1, 6, 20, 18), 13)
    np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    runs = [e for e in events if e[0] == "run"]
    assert runs == [("run", 0, False), ("run", 1, False)]  # on the worker thread, in order
    assert events.index(("trace", 1, True)) < events.index(("run", 0, False))
    events.clear()
    model.predict_on_batch(x)  # a traced shape: the stages run in turn on the caller's thread
    assert [e for e in events if e[0] == "run"] == [("run", 0, True), ("run", 1, True)]


def test_a_failing_stage_fails_the_call():
    model = _classifier()
    fns = model._xla_functions()

    def fail():
        raise RuntimeError("stage failed")

    model._xla_forward_holder.fns = [fns[0], _RecordedFunction(fns[1], 1, [], before_run=fail)]
    with pytest.raises(RuntimeError, match="stage failed"):
        model.predict_on_batch(_clip((1, 6, 20, 18), 14))


def _compile(model, **kwargs):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs
    )
    return model


def test_compile_defaults_to_xla_on_tensorflow_and_keeps_explicit_choices():
    model = _compile(_classifier())
    assert model.jit_compile is True  # Keras alone resolves "auto" to False on a CPU-only host
    assert _compile(_classifier(), jit_compile=False).jit_compile is False
    assert _compile(_classifier(), run_eagerly=True).jit_compile is False
    positional = _classifier()  # compile(optimizer, loss, loss_weights, metrics, weighted_metrics, run_eagerly, ...)
    positional.compile("sgd", "mse", None, None, None, False, 1, False)
    assert positional.jit_compile is False
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert _compile(_classifier()).jit_compile is False  # XLA is off under tf.distribute, as in Keras
    # A compiled model still predicts through its own XLA forward pass (not Keras' predict function).
    x = _clip((1, 4, 12, 12), 5)
    np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert [fn.experimental_get_tracing_count() for fn in model._xla_functions()] == [1, 1]  # one per stage


def test_the_optimizer_is_built_before_the_train_function_is_traced():
    """Built inside the trace (Keras' default on TensorFlow without a strategy), the optimizer's slots
    made the XLA step compile longer and peak higher (benchmarks/HISTORY.md)."""
    model = _classifier()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss)  # AdamW: an optimizer with slots
    built_in_trace = []
    build = model.optimizer.build
    model.optimizer.build = lambda variables: (built_in_trace.append(tf.inside_function()), build(variables))[1]
    model.train_on_batch(_clip((2, 4, 12, 12), 8), np.array([1, 2]))
    assert built_in_trace == [False]


def _xla_training_step(model, x, y):
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return tape.gradient(loss, model.trainable_variables)

    return tf.function(step, jit_compile=True)


def test_mlp_gradients_stay_lean_under_xla():
    """Two measured costs of a Swin-T training step (benchmarks/HISTORY.md), checked where they arise:
    the MLP's bias gradients are reduced over the rows of 2-d gradients (XLA:CPU reduces a 5-d one over
    its leading axes in a strided loop, 1.2 s of a step), and XLA keeps the backward pass's erf apart from
    the forward's (merged, the forward's erf stays alive until the backward pass: ~370 MB of peak)."""
    model = _classifier()
    x, y = _clip((2, 4, 24, 24), 7), np.array([1, 2])
    step = _xla_training_step(model, x, y)
    graph = step.get_concrete_function(x, y).graph
    mlp_bias_grads = [op for op in graph.get_operations() if op.type == "BiasAddGrad" and "/mlp" in op.name]
    # fc1's bias gradients (fc2's come from `gelu_dense_lean`'s backward, a sum over 2-d rows)
    assert len(mlp_bias_grads) == sum(SMALL_ARCH["depths"]) and all("/fc1" in op.name for op in mlp_bias_grads)
    assert all(op.inputs[0].shape.rank == 2 for op in mlp_bias_grads)
    hlo = step.experimental_get_compiler_ir(x, y)(stage="optimized_hlo")
    erfs = re.findall(r"= f32\[[0-9,]*\]\{[0-9,]*\} erf\(", hlo)
    assert len(erfs) == 2 * sum(SMALL_ARCH["depths"])  # one forward, one backward per block


def test_predict_reloaded_model(tmp_path):
    model = _classifier()
    x = _clip((1, 6, 20, 18), 4)
    expected = model.predict_on_batch(x)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded.predict_on_batch(x), expected)


def test_lean_gelu_gradient_equals_autodiff_of_the_formula():
    x = tf.constant(np.linspace(-6, 6, 101, dtype="float32") + 0.01)
    grads = []
    for fn in (window_ops.gelu_erf, window_ops.gelu_erf_lean):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = y * y
        grads.append(tape.gradient(loss, x).numpy())
        np.testing.assert_array_equal(y.numpy(), window_ops.gelu_erf(x).numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_lean_gelu_dense_gradients_equal_autodiff_of_the_plain_layers():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((37, 16)).astype("float32") * 2)
    kernel = tf.constant(rng.standard_normal((16, 5)).astype("float32"))
    bias = tf.constant(rng.standard_normal(5).astype("float32"))
    upstream = tf.constant(rng.standard_normal((37, 5)).astype("float32"))
    results = []
    for fn in (lambda a, k, b: window_ops.gelu_erf(a) @ k + b, window_ops.gelu_dense_lean):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias])
            y = fn(x, kernel, bias)
            loss = tf.reduce_sum(y * upstream)
        results.append((y.numpy(), [g.numpy() for g in tape.gradient(loss, [x, kernel, bias])]))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    cdf, _ = window_ops._gelu_derivative_terms(x)  # the backward's recomputed GELU is the forward's
    np.testing.assert_array_equal((x * cdf).numpy(), window_ops.gelu_erf(x).numpy())
    for lean, plain in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(lean, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shifted", [False, True])
def test_fused_attention_folding_equals_the_plain_path(shifted):
    """`_attend_fused` (taken on JAX GPUs in half precision) folds the windows of a clip into the heads axis
    so that the shift mask becomes one broadcast bias; here, in float32 through the backend's reference
    `dot_product_attention`, it must equal `_attend` window by window."""
    layer = WindowAttention3D(24, 2, (2, 3, 3))
    n, batch = 18, 3
    padded, shift = (4, 6, 6), ((1, 1, 1) if shifted else (0, 0, 0))
    mask = np.asarray(window_ops.shifted_window_mask(padded, (2, 3, 3), shift)) if shifted else None
    nw = 8
    x = np.random.default_rng(1).standard_normal((batch * nw, n, 24)).astype("float32")  # (windows, n, C)
    layer(x)
    qkv = ops.reshape(layer.qkv(x), (-1, n, 3, 2, 12))
    bias = layer.relative_position_bias(n)
    fused = np.asarray(layer._attend_fused(qkv, bias, None if mask is None else ops.convert_to_tensor(mask)))
    t = ops.transpose(qkv, (2, 0, 3, 1, 4))
    plain = layer._attend(t[0] * layer.scale, t[1], t[2], bias, mask)
    np.testing.assert_allclose(fused, np.asarray(ops.transpose(plain, (0, 2, 1, 3))), rtol=1e-5, atol=1e-5)
    if shifted:
        assert np.abs(mask).max() > 0  # the mask is not all zeros: the folding is exercised


def _attention_inputs(dtype="float32", masked=True, seed=5):
    rng = np.random.default_rng(seed)
    nw, batch, heads, n, d = 4, 2, 3, 12, 8
    q, k, v = (tf.constant(rng.standard_normal((batch * nw, heads, n, d)), dtype) for _ in range(3))
    bias = tf.constant(rng.standard_normal((heads, n, n)).astype("float32"))
    mask = tf.constant(np.where(rng.random((nw, n, n)) < 0.3, window_ops.MASK_VALUE, 0.0).astype("float32"))
    upstream = tf.constant(rng.standard_normal((batch * nw, heads, n, d)), dtype)
    return q, k, v, bias, mask if masked else None, upstream


def _plain_attention(q, k, v, bias, mask):
    return ops.matmul(ops.cast(window_ops.attention_probabilities(q, k, bias, mask), v.dtype), v)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_recomputed_attention_probabilities_give_the_gradients_of_the_plain_path(masked, dtype, tol):
    q, k, v, bias, mask, upstream = _attention_inputs(dtype, masked)
    results = []
    for fn in (_plain_attention, window_ops.attention_recomputing_probabilities):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v, bias])
            out = fn(q, k, v, bias, mask)
            loss = tf.reduce_sum(tf.cast(out * upstream, "float32"))
        results.append((out.numpy(), [g.numpy() for g in tape.gradient(loss, [q, k, v, bias])]))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    for recomputed, plain in zip(results[1][1], results[0][1]):
        assert recomputed.dtype == plain.dtype
        np.testing.assert_allclose(recomputed.astype("float32"), plain.astype("float32"), rtol=tol, atol=tol)


def test_attention_probabilities_are_recomputed_under_xla(monkeypatch):
    """XLA merges an expression that the backward pass repeats from the forward's with the forward's and keeps
    that alive: the recomputation must survive as a second softmax (one more exponential) per block."""
    x, y = _clip((2, 8, 24, 24), 9), np.array([0, 3])
    exponentials = {}
    for threshold in (2**62, 0):
        monkeypatch.setattr(WindowAttention3D, "RECOMPUTE_PROBABILITIES_ABOVE_BYTES", threshold)
        keras.utils.set_random_seed(0)
        model = _classifier()
        hlo = _xla_training_step(model, x, y).experimental_get_compiler_ir(x, y)(stage="optimized_hlo")
        exponentials[threshold] = len(re.findall(r"\} exponential\(", hlo))
    assert exponentials[0] == exponentials[2**62] + sum(SMALL_ARCH["depths"])


def test_probabilities_are_recomputed_only_in_training_where_they_are_large(monkeypatch):
    calls = []
    recompute = window_ops.attention_recomputing_probabilities
    monkeypatch.setattr(window_ops, "attention_recomputing_probabilities", lambda *a: calls.append(1) or recompute(*a))
    model, x = _classifier(), _clip((2, 8, 24, 24), 9)
    model(x, training=True)
    assert calls == []  # a few kB of probabilities per block: kept
    monkeypatch.setattr(WindowAttention3D, "RECOMPUTE_PROBABILITIES_ABOVE_BYTES", 0)
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
    layer = WindowAttention3D(96, 3)
    assert layer._recomputes_probabilities(tf.zeros((2 * 64, 3, 392, 1)))
    assert not layer._recomputes_probabilities(tf.zeros((2 * 16, 6, 392, 1)))


def _bounded_attention(q, k, v, bias):
    bias_min, bias_max = ops.min(bias, axis=(1, 2)), ops.max(bias, axis=(1, 2))
    return window_ops.attention_with_bounded_offsets(q, k, v, bias, bias_min, bias_max)


def _attention_in_float64(q, k, v, bias):
    q, k, v, bias = (np.asarray(t, "float64") for t in (q, k, v, bias))
    scores = q @ k.transpose(0, 1, 3, 2) + bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)) @ v


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
def test_attention_with_bounded_offsets_is_as_close_to_float64_as_the_plain_path(inputs, jit_compile):
    """Against float64 at the parity tests' tolerance, as the plain path is (their float32 roundings differ by
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
    for fn in (lambda *a: _plain_attention(*a, None), _bounded_attention):
        got = np.asarray((tf.function(fn, jit_compile=True) if jit_compile else fn)(q, k, v, bias))
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, truth, rtol=1e-5, atol=1e-5)


def test_bounded_offsets_only_for_unmasked_windows_in_float32_inference_compiled_for_the_cpu(monkeypatch):
    unmasked, bounded = [], []
    attend, bounds = WindowAttention3D._attend, WindowAttention3D._bounds_offsets

    def spy(self, q, k, v, bias, mask=None, training=None):
        unmasked.append(mask is None)
        return attend(self, q, k, v, bias, mask, training)

    monkeypatch.setattr(WindowAttention3D, "_attend", spy)
    monkeypatch.setattr(WindowAttention3D, "_bounds_offsets", lambda self, q: bounds(self, q) and not bounded.append(1))
    model, x = _classifier(), _clip((2, 8, 24, 24), 9)
    model(x)
    model(x, training=True)
    tf.function(lambda v: model(v, training=True))(x)
    spec = tf.TensorSpec((None, 8, 24, 24, 3), tf.float32)  # an exported graph: dynamic batch
    tf.function(lambda v: model(v, training=False), input_signature=[spec]).get_concrete_function()
    assert bounded == []
    for run in (tf.function(lambda v: model(v, training=False)), model.predict_on_batch):
        unmasked.clear()
        run(x)
        # Stage 1 (4 x 6 x 6 tokens, window 4 x 3 x 3) shifts in space; stage 2 (4 x 3 x 3) does not.
        assert unmasked == [True, False, True, True]
        assert len(bounded) == 3
        bounded.clear()
    monkeypatch.setattr(WindowAttention3D, "bounded_offsets", False)
    tf.function(lambda v: model(v, training=False))(x)
    assert bounded == []
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = _classifier()
        tf.function(lambda v: half(v, training=False))(x)
    finally:
        keras.config.set_dtype_policy("float32")
    assert bounded == []
