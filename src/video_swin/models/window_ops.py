"""Pure tensor functions of the shifted-window scheme: the window geometry (padding, shift, partition, mask,
relative position index) and the constants built once per static geometry. The attention computed inside the
windows is in `attention`.

Every function works with `keras.ops`, so on every Keras backend, and takes sizes that are either Python
ints (static shapes: eager, JAX, PyTorch, TF graphs with known shapes) or scalar tensors (TF graphs whose
T, H, W are `None`, e.g. a SavedModel with dynamic T/H/W). Decisions that the original code makes in
Python (`if size <= window`) become `ops.where` on tensors, so one traced graph serves every input size.

Layout conventions follow the official code: features are channels-last `(B, D, H, W, C)`; windows are
in d-major raster order with batch outermost; tokens inside a window are d-major `(d, h, w)`.
"""

from __future__ import annotations

import numpy as np
from keras import ops

MASK_VALUE = -100.0


def is_static(*values) -> bool:
    return all(isinstance(v, (int, np.integer)) for v in values)


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
