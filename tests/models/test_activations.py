"""The GELU's training forms (models/activations.py) against automatic differentiation of the plain formula.
(The exact GELU against torch's is in test_window_ops.py.)"""

import numpy as np
import tensorflow as tf

from video_swin.models import activations


def test_lean_gelu_gradient_equals_autodiff_of_the_formula():
    x = tf.constant(np.linspace(-6, 6, 101, dtype="float32") + 0.01)
    grads = []
    for fn in (activations.gelu_erf, activations.gelu_erf_lean):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = y * y
        grads.append(tape.gradient(loss, x).numpy())
        np.testing.assert_array_equal(y.numpy(), activations.gelu_erf(x).numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_lean_gelu_dense_gradients_equal_autodiff_of_the_plain_layers():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((37, 16)).astype("float32") * 2)
    kernel = tf.constant(rng.standard_normal((16, 5)).astype("float32"))
    bias = tf.constant(rng.standard_normal(5).astype("float32"))
    upstream = tf.constant(rng.standard_normal((37, 5)).astype("float32"))
    results = []
    for fn in (lambda a, k, b: activations.gelu_erf(a) @ k + b, activations.gelu_dense_lean):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias])
            y = fn(x, kernel, bias)
            loss = tf.reduce_sum(y * upstream)
        results.append((y.numpy(), [g.numpy() for g in tape.gradient(loss, [x, kernel, bias])]))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    cdf, _ = activations._gelu_derivative_terms(x)  # the backward's recomputed GELU is the forward's
    np.testing.assert_array_equal((x * cdf).numpy(), activations.gelu_erf(x).numpy())
    for lean, plain in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(lean, plain, rtol=1e-5, atol=1e-5)
