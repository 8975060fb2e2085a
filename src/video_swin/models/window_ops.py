"""Pure tensor functions of the shifted-window scheme.

Every function works with `keras.ops`, so on every Keras backend, and takes sizes that are either Python
ints (static shapes: eager, JAX, PyTorch, TF graphs with known shapes) or scalar tensors (TF graphs whose
T, H, W are `None`, e.g. a SavedModel with dynamic T/H/W). Decisions that the original code makes in
Python (`if size <= window`) become `ops.where` on tensors, so one traced graph serves every input size.

Layout conventions follow the official code: features are channels-last `(B, D, H, W, C)`; windows are
in d-major raster order with batch outermost; tokens inside a window are d-major `(d, h, w)`.
"""

from __future__ import annotations

import functools

import numpy as np
from keras import ops

MASK_VALUE = -100.0


def is_static(*values) -> bool:
    return all(isinstance(v, (int, np.integer)) for v in values)


def traced(x) -> bool:
    """Whether `x` is being traced into a compiled graph (a `tf.function`, a JAX trace), where a loop
    (`ops.map`) becomes one graph loop instead of running op by op as it would eagerly."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


@functools.lru_cache(maxsize=None)
def runs_on_cpu() -> bool:
    """Whether the backend computes on the CPU (no GPU/TPU visible to TensorFlow, JAX's default backend)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "cpu"
    return True


def static_cpu_graph(x, *sizes) -> bool:
    """Whether `x` is traced into a compiled graph for the CPU with every size in `sizes` static: where the
    CPU-only paths of `layers.WindowAttention3D` (window groups, bounded softmax offsets) pay, and never in an
    exported graph, whose batch stays dynamic."""
    return is_static(*sizes) and traced(x) and runs_on_cpu()


def minimum(a, b):
    if is_static(a, b):
        return min(int(a), int(b))
    return ops.minimum(a, b)


def pad_amount(size, multiple):
    """Zeros to add at the end of an axis of `size` so that it becomes a multiple of `multiple`."""
    if is_static(size, multiple):
        return (-int(size)) % int(multiple)
    return (multiple - size % multiple) % multiple


def effective_window_and_shift(sizes, window_size, shift_size):
    """The official `get_window_size`: on an axis whose size is `<=` the window (equality counts), the
    window becomes the size and the shift becomes 0.

    Args:
        sizes: (D, H, W) of the token grid, ints or scalar tensors.
        window_size, shift_size: the configured (Wd, Wh, Ww) and (Sd, Sh, Sw), ints.
    Returns:
        (window, shift): two 3-tuples of ints or scalar tensors.
    """
    window, shift = [], []
    for size, w, s in zip(sizes, window_size, shift_size):
        if is_static(size):
            shrink = int(size) <= w
            window.append(int(size) if shrink else w)
            shift.append(0 if shrink else s)
        else:
            shrink = ops.less_equal(size, w)
            window.append(ops.where(shrink, size, w))
            shift.append(ops.where(shrink, 0, s))
    return tuple(window), tuple(shift)


def pad_end(x, pads):
    """Zero-pads the end of axes 1..3 of a (B, D, H, W, C) tensor by `pads` = (pd, ph, pw)."""
    if is_static(*pads) and not any(pads):
        return x
    return ops.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, pads[2]], [0, 0]])


def crop_end(x, sizes):
    """Inverse of `pad_end`: keeps the first (D, H, W) = `sizes` positions."""
    return x[:, : sizes[0], : sizes[1], : sizes[2], :]


def cyclic_shift(x, shifts):
    """`torch.roll(x, shifts=(-sd, -sh, -sw), dims=(1, 2, 3))`: element `s` moves to position 0.

    Written as slice + concatenate (not `roll`) because TFLite's builtin ops have no Roll. A negative
    shift rolls the other way (`reverse_cyclic_shift`).
    """
    for axis, shift in zip((1, 2, 3), shifts):
        if is_static(shift) and shift == 0:
            continue
        if is_static(shift):
            head = _slice_axis(x, axis, shift, None)
            tail = _slice_axis(x, axis, 0, shift)
        else:
            size = ops.shape(x)[axis]
            start = shift % size
            head = _slice_axis(x, axis, start, None)
            tail = _slice_axis(x, axis, 0, start)
        x = ops.concatenate([head, tail], axis=axis)
    return x


def reverse_cyclic_shift(x, shifts):
    """Undoes `cyclic_shift(x, shifts)`."""
    return cyclic_shift(x, tuple(-s for s in shifts))


def _slice_axis(x, axis, start, stop):
    index = [slice(None)] * 5
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def window_partition(x, window):
    """(B, D, H, W, C) with D, H, W multiples of `window` -> (B * nW, wd * wh * ww, C).

    Uses at most 6-D transposes (TFLite's limit): batch is merged with the window count along D, and the
    last window axis with the channels.
    """
    _, d, h, w, c = ops.shape(x)
    wd, wh, ww = window
    x = ops.reshape(x, (-1, wd, h // wh, wh, w // ww, ww * c))
    x = ops.transpose(x, (0, 2, 4, 1, 3, 5))
    return ops.reshape(x, (-1, wd * wh * ww, c))


def window_reverse(windows, window, sizes):
    """Inverse of `window_partition`: (B * nW, N, C) -> (B, D, H, W, C) for padded sizes (D, H, W)."""
    d, h, w = sizes
    wd, wh, ww = window
    c = ops.shape(windows)[-1]
    x = ops.reshape(windows, (-1, h // wh, w // ww, wd, wh, ww * c))
    x = ops.transpose(x, (0, 3, 1, 4, 2, 5))
    return ops.reshape(x, (-1, d, h, w, c))


def _region_labels(size, window, shift):
    """Region id of each position on one axis: the slices [0:-w], [-w:-s], [-s:] get 0, 1, 2; an axis
    with no shift is one region."""
    coords = ops.arange(size, dtype="int32")
    labels = ops.cast(coords >= size - window, "int32") + ops.cast(coords >= size - shift, "int32")
    if is_static(shift):
        return labels if shift > 0 else ops.zeros_like(labels)
    return ops.where(shift > 0, labels, ops.zeros_like(labels))


def shifted_window_mask(padded_sizes, window, shift):
    """The attention mask of a shifted block, built over the padded volume.

    With static sizes the mask is built once per geometry in NumPy and reused (`cached_constant`): no
    per-call construction, and nothing for XLA to constant-fold at compile time.

    Returns:
        (nW, N, N) float32: 0 where two tokens of a window come from the same region, -100 otherwise.
    """
    if is_static(*padded_sizes, *window, *shift):
        key = ("mask", *map(int, (*padded_sizes, *window, *shift)))
        return cached_constant(key, lambda: shifted_window_mask_numpy(padded_sizes, window, shift))
    dp, hp, wp = padded_sizes
    ld = _region_labels(dp, window[0], shift[0])
    lh = _region_labels(hp, window[1], shift[1])
    lw = _region_labels(wp, window[2], shift[2])
    labels = ld[:, None, None] * 9 + lh[None, :, None] * 3 + lw[None, None, :]
    labels = ops.reshape(labels, (1, dp, hp, wp, 1))
    labels = ops.squeeze(window_partition(labels, window), axis=-1)  # (nW, N)
    same = ops.equal(labels[:, :, None], labels[:, None, :])
    return ops.where(same, 0.0, MASK_VALUE)


def shifted_window_mask_numpy(padded_sizes, window, shift) -> np.ndarray:
    """`shifted_window_mask` for static sizes, in NumPy: (nW, N, N) float32."""
    (dp, hp, wp), (wd, wh, ww) = map(lambda v: tuple(int(i) for i in v), (padded_sizes, window))
    labels = [
        ((np.arange(size) >= size - w).astype(np.int32) + (np.arange(size) >= size - s)) * (s > 0)
        for size, w, s in zip((dp, hp, wp), (wd, wh, ww), map(int, shift))
    ]
    grid = labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3 + labels[2][None, None, :]
    grid = grid.reshape(dp // wd, wd, hp // wh, wh, wp // ww, ww).transpose(0, 2, 4, 1, 3, 5)
    grid = grid.reshape(-1, wd * wh * ww)  # (nW, N), windows and tokens d-major
    return np.where(grid[:, :, None] == grid[:, None, :], 0.0, MASK_VALUE).astype(np.float32)


# Constants that depend only on static sizes (attention masks, bias indices), built once per key.
# Bounded, so that a long-running process that sees many clip sizes does not grow without limit.
_CONSTANTS: dict = {}
_CONSTANTS_MAX_ENTRIES = 64


def cached_constant(key, make):
    """A backend tensor for `make()` (a NumPy array), created once per `key` and reused.

    On TensorFlow it is created eagerly (`tf.init_scope`) even when first requested inside a
    `tf.function` trace: the graph captures it as an input instead of embedding a constant, so that
    neither Grappler nor XLA spends compile time folding it, and every trace shares one buffer.
    """
    value = _CONSTANTS.get(key)
    if value is None:
        array = make()
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.init_scope():
                value = tf.constant(array)
        elif keras.backend.backend() == "jax":
            import jax

            # Concrete even inside a jit trace: a cached tracer would leak into the next trace
            # (UnexpectedTracerError in `fit`/`predict` after the first compiled call).
            with jax.ensure_compile_time_eval():
                value = jax.numpy.asarray(array)
        else:
            value = ops.convert_to_tensor(array)
            if getattr(getattr(value, "device", None), "type", None) == "meta":
                # PyTorch backend: Keras infers output shapes (functional model construction) on the
                # "meta" device, which has no data. Never cache such a tensor: real calls would reuse it.
                return value
        if len(_CONSTANTS) >= _CONSTANTS_MAX_ENTRIES:
            _CONSTANTS.pop(next(iter(_CONSTANTS)))
        _CONSTANTS[key] = value
    return value


def relative_position_index(window_size) -> np.ndarray:
    """(N, N) int index into the bias table for the configured window, N = Wd * Wh * Ww."""
    wd, wh, ww = window_size
    coords = np.stack(np.meshgrid(np.arange(wd), np.arange(wh), np.arange(ww), indexing="ij"))
    coords = coords.reshape(3, -1)
    rel = coords[:, :, None] - coords[:, None, :]
    rel = rel.transpose(1, 2, 0)
    rel[:, :, 0] += wd - 1
    rel[:, :, 1] += wh - 1
    rel[:, :, 2] += ww - 1
    rel[:, :, 0] *= (2 * wh - 1) * (2 * ww - 1)
    rel[:, :, 1] *= 2 * ww - 1
    return rel.sum(-1).astype("int32")


def gelu_erf(x):
    """Exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), written out so that tf2onnx can export it (TF's own
    exact GELU lowers to Erfc, which it cannot)."""
    return 0.5 * x * (1.0 + ops.erf(x * np.float32(1.0 / np.sqrt(2.0)).item()))


def _incoming_gradient(args, upstream):
    """The gradient arriving at an `ops.custom_gradient` function's backward: TensorFlow and JAX pass it as
    the only positional argument, PyTorch as `upstream=` after the forward's inputs."""
    return args[0] if upstream is None else upstream


@ops.custom_gradient
def gelu_erf_lean(x):
    """`gelu_erf` with its derivative written out, Phi(x) + x * phi(x), recomputed from x alone.

    Same forward values. Automatic differentiation of the written-out formula keeps three more tensors
    of the MLP's hidden size alive until the backward pass (x / sqrt(2), erf(...) + 1 and 0.5 * x);
    this keeps only x, as PyTorch's GELU does: about 1 GB less peak memory in a Swin-T training step
    at batch 2 x 16x224x224. Used in training; inference and export graphs keep plain `gelu_erf`.
    """

    def grad(*args, upstream=None):
        upstream = _incoming_gradient(args, upstream)
        cdf, pdf = _gelu_derivative_terms(x)
        return upstream * (cdf + x * pdf)

    return gelu_erf(x), grad


def _gelu_derivative_terms(x):
    """(Phi(x), phi(x)) for the GELU's derivative Phi(x) + x * phi(x). Phi is computed as
    (1 - erf(-x / sqrt 2)) / 2 (erf is odd): not the forward's expression, which XLA would otherwise merge
    with this one and keep alive from the forward pass (one more tensor of the MLP's hidden size per
    block: XLA's buffers for a Swin-T training step at batch 2 x 16x224x224 were 3.27 GiB, now 2.96)."""
    cdf = 0.5 * (1.0 - ops.erf(x * np.float32(-1.0 / np.sqrt(2.0)).item()))
    pdf = ops.exp(-0.5 * x * x) * np.float32(1.0 / np.sqrt(2.0 * np.pi)).item()
    return cdf, pdf


@ops.custom_gradient
def gelu_dense_lean(x, kernel, bias):
    """`gelu_erf(x) @ kernel + bias` for x (tokens, hidden), keeping only x for the backward pass.

    The MLP's second Linear needs its input, GELU(x), for its weight gradient; PyTorch keeps that tensor
    from the forward pass. Here the backward pass recomputes it from x, which the GELU's own derivative
    needs anyway: one tensor of the hidden size less per block (a Swin-T training step at batch 2 x
    16x224x224 peaked ~370 MB lower). The recomputed GELU, x * Phi(x), equals the forward's bit for bit
    (halving is exact). Used in training; inference and export graphs keep the plain layers.
    """

    def grad(*args, upstream=None):
        upstream = _incoming_gradient(args, upstream)
        cdf, pdf = _gelu_derivative_terms(x)
        hidden = x * cdf
        d_kernel = ops.matmul(ops.transpose(hidden), upstream)
        d_bias = ops.sum(upstream, axis=0)
        d_hidden = ops.matmul(upstream, ops.transpose(kernel))
        return d_hidden * (cdf + x * pdf), d_kernel, d_bias

    return ops.matmul(gelu_erf(x), kernel) + bias, grad


def attention_probabilities(q, k, bias, mask=None):
    """softmax(q kT + bias + mask) over the last axis, in float32.

    q, k (windows, heads, n, d), q already scaled; bias (heads, n, n); mask (nW, n, n) or None, repeating
    over the batch (windows = batch * nW, batch outermost) -> (windows, heads, n, n). Bias, mask and softmax
    stay in float32 under mixed precision: -100 and the bias would lose precision (or overflow after
    accumulation) in float16.
    """
    heads, n = ops.shape(q)[1], ops.shape(q)[2]
    scores = ops.cast(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), "float32") + bias[None]
    if mask is not None:
        num_windows = ops.shape(mask)[0]
        scores = ops.reshape(scores, (-1, num_windows, heads, n, n)) + mask[None, :, None]
        scores = ops.reshape(scores, (-1, heads, n, n))
    if is_static(n) and n == 1:
        return ops.ones_like(scores)  # a one-token window attends to itself; skips Keras' size-1 warning
    return ops.softmax(scores, axis=-1)


# How far above its largest score a row's offset may lie in `attention_with_bounded_offsets`: e^-60 leaves the
# largest term 27 powers of e above float32's smallest normal number, so no term that counts in float32
# underflows.
OFFSET_GAP = 60.0


def attention_with_bounded_offsets(q, k, v, bias, bias_min, bias_max):
    """softmax(q kT + bias) v in float32, without the pass over the scores that finds each row's maximum.

    softmax(x) = exp(x - c) / sum(exp(x - c)) for any offset c per row. The plain path takes c = max(x): one
    more pass over the n x n scores, after the bias add, so the sum is written out once more as well. Here
    c = max_j (q kT)_ij + min(bias_max, bias_min + OFFSET_GAP), with bias_min and bias_max (heads,) bounding
    the bias from below and above: the raw product's row maximum, so the bias add fuses with the exponential.
    Where a head's bias spans at most OFFSET_GAP, c lies between the row's maximum and OFFSET_GAP above it: no
    term overflows and the largest does not underflow. A wider bias keeps c at most OFFSET_GAP above the
    maximum; the sums can then overflow only where the bias spans more than OFFSET_GAP + 82 (float32's
    exponent range, less log n for n = 392). The sums divide the n x d output instead of the n x n
    probabilities. No mask: a masked score far above every allowed one would lift c far above the row's
    maximum. q, k, v float32 (windows, heads, n, d), q already scaled; bias (heads, n, n) -> (windows,
    heads, n, d).
    """
    raw = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
    bias_bound = ops.minimum(bias_max, bias_min + OFFSET_GAP)
    offset = ops.max(raw, axis=-1, keepdims=True) + bias_bound[None, :, None, None]
    exponentials = ops.exp(raw + bias[None] - offset)
    return ops.matmul(exponentials, v) / ops.sum(exponentials, axis=-1, keepdims=True)


def attention_recomputing_probabilities(q, k, v, bias, mask=None):
    """attention_probabilities(q, k, bias, mask) @ v, keeping q, k, v for the backward pass and recomputing
    the probabilities there instead of keeping them, as flash attention does.

    The probabilities are the largest tensors of a training step (heads x n x n per window: ~1.1 GB for
    Swin-T at batch 2 x 16x224x224, 0.47 GB of it in stage 1). Recomputing costs one more q kT and softmax
    in the backward pass. q, k, v (windows, heads, n, d) -> (windows, heads, n, d). No attention dropout.
    """
    return _attend_recomputing(q, k, v, bias, *([] if mask is None else [mask]))


def _attention_backward(q, k, v, bias, mask, upstream):
    # q made to depend on the incoming gradient (adding 0 * one of its elements; XLA does not fold a
    # float x * 0): otherwise XLA sees the forward's expression again, merges the two and keeps the
    # forward's probabilities alive after all (measured: no memory saved). An optimisation barrier did
    # not help: XLA:CPU's optimized HLO had neither the barriers nor the recomputation. A NaN or inf in
    # that element makes every gradient here NaN, which it would make most of them anyway.
    q = q + ops.zeros((), q.dtype) * upstream[:1, :1, :1, :1]
    probs = attention_probabilities(q, k, bias, mask)
    p = ops.cast(probs, v.dtype)
    d_v = ops.matmul(ops.transpose(p, (0, 1, 3, 2)), upstream)
    d_probs = ops.cast(ops.matmul(upstream, ops.transpose(v, (0, 1, 3, 2))), "float32")
    d_scores = probs * (d_probs - ops.sum(d_probs * probs, axis=-1, keepdims=True))
    d_bias = ops.sum(d_scores, axis=0)
    d_scores = ops.cast(d_scores, q.dtype)
    d_q = ops.matmul(d_scores, k)
    d_k = ops.matmul(ops.transpose(d_scores, (0, 1, 3, 2)), q)
    return d_q, d_k, d_v, ops.cast(d_bias, bias.dtype)


@ops.custom_gradient
def _attend_recomputing(q, k, v, bias, *mask):
    """`attention_recomputing_probabilities`, the mask (if any) as the last input. A custom gradient gives
    one gradient per input: the mask's are zeros, which XLA and TF graphs drop as unused."""
    probs_mask = mask[0] if mask else None

    def grad(*args, upstream=None):
        upstream = _incoming_gradient(args, upstream)
        return (*_attention_backward(q, k, v, bias, probs_mask, upstream), *(ops.zeros_like(m) for m in mask))

    return ops.matmul(ops.cast(attention_probabilities(q, k, bias, probs_mask), v.dtype), v), grad
