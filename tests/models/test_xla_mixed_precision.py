"""XLA (`jit_compile=True`) and mixed precision on the TensorFlow backend. Every comparison is against the
same model's float32, non-XLA result in the same test."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from video_swin.models import window_ops
from video_swin.models.layers import WindowAttention3D
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

SMALL_ARCH = dict(embed_dim=24, depths=(2, 2), num_heads=(2, 4), window_size=(4, 3, 3), drop_path_rate=0.0)
# (B, T, H, W): tokens 5 x 10 x 9 then 5 x 5 x 5: shifted windows with masks and padding in both stages.
SHAPE = (2, 10, 40, 36)


def _classifier(arch=SMALL_ARCH, num_classes=5, seed=0):
    """Built from its own seed: the weights do not depend on which tests ran before."""
    keras.utils.set_random_seed(seed)
    return VideoSwinClassifier(VideoSwinBackbone(**arch), num_classes=num_classes, head_dropout=0.0)


def _clip(shape, seed):
    return np.random.default_rng(seed).standard_normal(tuple(shape) + (3,)).astype("float32")


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test and restores the previous one."""
    previous = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


def test_xla_inference_equals_non_xla():
    model = _classifier()
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    x = _clip(SHAPE, 1)
    assert "HloModule" in xla.experimental_get_compiler_ir(x)(stage="hlo")  # really compiled by XLA
    np.testing.assert_allclose(xla(x).numpy(), np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_xla_training_step_equals_non_xla():
    x, y = _clip(SHAPE, 7), np.array([1, 3])
    reference = _classifier(seed=1)  # functional: built at construction
    start = reference.get_weights()
    results = {}
    for jit in (False, True):
        model = _classifier()
        model.set_weights(start)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        losses = [float(model.train_on_batch(x, y)) for _ in range(2)]
        assert model.jit_compile is jit
        results[jit] = (losses, model.get_weights())
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    assert all(not np.array_equal(a, b) for a, b in zip(results[False][1], start))  # every variable trained
    for a, b, v in zip(results[True][1], results[False][1], reference.weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=v.path)


@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_inference_of_swin_t(name, policy):
    """Swin-T (the real architecture) at 20x64x96: temporal shift with masks, padding, window shrink."""
    keras.utils.set_random_seed(2)
    float_model = VideoSwinClassifier(VideoSwinBackbone.from_variant("tiny", drop_path_rate=0.0), num_classes=10)
    xs = [_clip((1, 20, 64, 96), 2)]
    expected = [np.asarray(float_model(x)) for x in xs]
    policy(name)
    model = VideoSwinClassifier(VideoSwinBackbone.from_variant("tiny", drop_path_rate=0.0), num_classes=10)
    model.set_weights(float_model.get_weights())
    assert model.compute_dtype == name.split("_")[1] and all(v.dtype == "float32" for v in model.weights)
    for x, want in zip(xs, expected):
        got = np.asarray(model(x))
        assert str(got.dtype) == name.split("_")[1]
        got = got.astype("float32")
        assert np.isfinite(got).all()
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error < (0.05 if name == "mixed_bfloat16" else 0.01), error
        assert np.argmax(got) == np.argmax(want)


@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_step(name, policy):
    x, y = _clip(SHAPE, 3), np.array([0, 4])
    policy(name)
    model = _classifier(seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if name == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras adds loss scaling
    before = model.get_weights()
    losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
    after = model.get_weights()
    assert np.isfinite(losses).all() and min(losses[1:]) < losses[0], losses
    assert all(np.isfinite(w).all() and w.dtype == np.float32 for w in after)
    assert sum(not np.array_equal(a, b) for a, b in zip(before, after)) == len(after)  # every variable moved


def test_float16_attention_with_masks_stays_finite_and_close(policy):
    """The -100 mask and the bias are added in float32: a float16 layer equals the float32 one within
    float16 precision, even with large logits that would overflow in float16 after the mask add."""
    window, shift, padded = (4, 3, 3), (2, 1, 1), (8, 6, 6)
    mask = window_ops.shifted_window_mask(padded, window, shift)
    n = 4 * 3 * 3
    x = 6.0 * np.random.default_rng(5).standard_normal((2 * 8, n, 32)).astype("float32")  # large activations
    layers = {}
    keras.utils.set_random_seed(6)
    for name in ("float32", "mixed_float16"):
        policy(name)
        layers[name] = WindowAttention3D(32, 2, window)
        layers[name].build((None, n, 32))
    layers["mixed_float16"].set_weights(layers["float32"].get_weights())
    want = np.asarray(layers["float32"](x, attention_mask=mask))
    got = np.asarray(layers["mixed_float16"](x, attention_mask=mask))
    assert got.dtype == np.float16 and np.isfinite(got).all()
    np.testing.assert_allclose(got.astype("float32"), want, rtol=0, atol=2e-2 * np.abs(want).max())
