"""How the models execute, never what they compute: `predict` / `predict_on_batch` compiled by XLA one stage at a
time (traced ahead of the compile), `compile()`'s XLA default, and what the XLA training step keeps. (Benchmarks
live in benchmarks/, not here; the attention kernels are tested in test_attention.py.)"""

import re
import threading

import numpy as np
import pytest
import tensorflow as tf

import keras
from tests import reference
from tests.models.helpers import SMALL_ARCH, classifier, clip, xla_training_step
from video_swin.checkpoints import weights
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

PARITY = 1e-5  # rtol = atol against torchvision, as in test_model_parity.py


def test_predict_is_compiled_by_xla_and_equals_eager():
    model = classifier()
    assert model.inference_jit_compile == "auto"
    for i, shape in enumerate([(2, 10, 40, 36), (1, 5, 33, 47)]):
        x = clip(shape, 10 + i)
        np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert model._inference_uses_xla()
    x = clip((1, 4, 16, 16), 3)
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
    x = clip((1, 6, 20, 18), 12)
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
    model = classifier()
    fns = model._xla_functions()
    next_traced = threading.Event()
    events = []
    # The first stage's run waits for the second stage's trace to begin: without tracing ahead it
    # would wait out the timeout and run after it.
    model._xla_forward_holder.fns = [
        _RecordedFunction(fns[0], 0, events, before_run=lambda: next_traced.wait(timeout=30)),
        _RecordedFunction(fns[1], 1, events, on_trace=next_traced.set),
    ]
    x = clip((1, 6, 20, 18), 13)
    np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    runs = [e for e in events if e[0] == "run"]
    assert runs == [("run", 0, False), ("run", 1, False)]  # on the worker thread, in order
    assert events.index(("trace", 1, True)) < events.index(("run", 0, False))
    events.clear()
    model.predict_on_batch(x)  # a traced shape: the stages run in turn on the caller's thread
    assert [e for e in events if e[0] == "run"] == [("run", 0, True), ("run", 1, True)]


def test_a_failing_stage_fails_the_call():
    model = classifier()
    fns = model._xla_functions()

    def fail():
        raise RuntimeError("stage failed")

    model._xla_forward_holder.fns = [fns[0], _RecordedFunction(fns[1], 1, [], before_run=fail)]
    with pytest.raises(RuntimeError, match="stage failed"):
        model.predict_on_batch(clip((1, 6, 20, 18), 14))


def _compile(model, **kwargs):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs
    )
    return model


def test_compile_defaults_to_xla_on_tensorflow_and_keeps_explicit_choices():
    model = _compile(classifier())
    assert model.jit_compile is True  # Keras alone resolves "auto" to False on a CPU-only host
    assert _compile(classifier(), jit_compile=False).jit_compile is False
    assert _compile(classifier(), run_eagerly=True).jit_compile is False
    positional = classifier()  # compile(optimizer, loss, loss_weights, metrics, weighted_metrics, run_eagerly, ...)
    positional.compile("sgd", "mse", None, None, None, False, 1, False)
    assert positional.jit_compile is False
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert _compile(classifier()).jit_compile is False  # XLA is off under tf.distribute, as in Keras
    # A compiled model still predicts through its own XLA forward pass (not Keras' predict function).
    x = clip((1, 4, 12, 12), 5)
    np.testing.assert_allclose(model.predict_on_batch(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert [fn.experimental_get_tracing_count() for fn in model._xla_functions()] == [1, 1]  # one per stage


def test_the_optimizer_is_built_before_the_train_function_is_traced():
    """Built inside the trace (Keras' default on TensorFlow without a strategy), the optimizer's slots
    made the XLA step compile longer and peak higher (benchmarks/HISTORY.md)."""
    model = classifier()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss)  # AdamW: an optimizer with slots
    built_in_trace = []
    build = model.optimizer.build
    model.optimizer.build = lambda variables: (built_in_trace.append(tf.inside_function()), build(variables))[1]
    model.train_on_batch(clip((2, 4, 12, 12), 8), np.array([1, 2]))
    assert built_in_trace == [False]


def test_mlp_gradients_stay_lean_under_xla():
    """Two measured costs of a Swin-T training step (benchmarks/HISTORY.md), checked where they arise:
    the MLP's bias gradients are reduced over the rows of 2-d gradients (XLA:CPU reduces a 5-d one over
    its leading axes in a strided loop, 1.2 s of a step), and XLA keeps the backward pass's erf apart from
    the forward's (merged, the forward's erf stays alive until the backward pass: ~370 MB of peak)."""
    model = classifier()
    x, y = clip((2, 4, 24, 24), 7), np.array([1, 2])
    step = xla_training_step(model)
    graph = step.get_concrete_function(x, y).graph
    mlp_bias_grads = [op for op in graph.get_operations() if op.type == "BiasAddGrad" and "/mlp" in op.name]
    # fc1's bias gradients (fc2's come from `gelu_dense_lean`'s backward, a sum over 2-d rows)
    assert len(mlp_bias_grads) == sum(SMALL_ARCH["depths"]) and all("/fc1" in op.name for op in mlp_bias_grads)
    assert all(op.inputs[0].shape.rank == 2 for op in mlp_bias_grads)
    hlo = step.experimental_get_compiler_ir(x, y)(stage="optimized_hlo")
    erfs = re.findall(r"= f32\[[0-9,]*\]\{[0-9,]*\} erf\(", hlo)
    assert len(erfs) == 2 * sum(SMALL_ARCH["depths"])  # one forward, one backward per block


def test_predict_reloaded_model(tmp_path):
    model = classifier()
    x = clip((1, 6, 20, 18), 4)
    expected = model.predict_on_batch(x)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded.predict_on_batch(x), expected)
