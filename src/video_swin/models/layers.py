"""The layers of the Video Swin Transformer, each usable and testable on its own.

All layers are channels-last and build their variables from the channel count only, so one model
serves every clip length and resolution. Sizes that depend on the input (padding, window shrink,
shift, mask) are computed from the runtime shape in `call`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from video_swin.models import activations, attention, window_ops

LAYER_NORM_EPSILON = 1e-5
PACKAGE = "video_swin"


def layer_norm(name):
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)


def _triple(value):
    if isinstance(value, int):
        return (value, value, value)
    return tuple(int(v) for v in value)


@keras.saving.register_keras_serializable(package=PACKAGE)
class StochasticDepth(keras.layers.Layer):
    """Drop path: in training, zeroes each sample's residual branch with probability `rate` and scales
    the survivors by 1 / (1 - rate); identity in inference."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        mask = ops.floor(keep + noise)
        return x / keep * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BackgroundDifference(keras.layers.Layer):
    """(B, T, H, W, C) -> |x - m| - offset, with m the clip's median per channel: each pixel's distance
    from the background colour, for clips whose background is one colour covering most of the frame.

    An optional input stem (off in every official model). It makes the input independent of the
    colours of the background and the objects and of the sign of their contrast, which a linear patch
    embedding cannot learn to ignore: on the synthetic motion set, a small Video Swin trained from
    scratch stays at chance for thousands of steps without it (docs/training.md). The offset keeps a
    background token away from zero: the patch embedding's LayerNorm would scale a token of near-zero
    noise up to unit variance, as loud as the shape's tokens, and learning then starts far later
    (measured, docs/training.md). The median is taken over a grid of every 2nd frame and every 8th row
    and column, which is exact enough for a background and keeps the sort cheap at any clip size.
    Computed in float32 whatever the dtype policy.
    """

    SAMPLE_STRIDES = (2, 8, 8)

    def __init__(self, offset=0.15, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.offset = float(offset)

    def call(self, x):
        t, h, w = self.SAMPLE_STRIDES
        sample = ops.reshape(x[:, ::t, ::h, ::w, :], (ops.shape(x)[0], -1, ops.shape(x)[-1]))
        # A sort and the two middle values (NumPy's median), not `ops.median`: on TensorFlow that computes
        # in float64, which TFLite's builtin ops cannot run.
        ordered = ops.sort(ops.transpose(sample, (0, 2, 1)), axis=-1)  # (B, C, samples)
        count = ops.shape(ordered)[-1]
        middle = (ops.take(ordered, (count - 1) // 2, axis=-1) + ops.take(ordered, count // 2, axis=-1)) * 0.5
        return ops.abs(x - middle[:, None, None, None, :]) - self.offset

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEmbedding3D(keras.layers.Layer):
    """Zero-pads the end of T, H, W to multiples of the patch, then Conv3D(kernel = stride = patch) and
    LayerNorm. (B, T, H, W, 3) -> (B, ceil(T/pt), ceil(H/ph), ceil(W/pw), C)."""

    def __init__(self, patch_size=(2, 4, 4), embed_dim=96, patch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _triple(patch_size)
        self.embed_dim = int(embed_dim)
        self.patch_norm = bool(patch_norm)
        self.proj = keras.layers.Conv3D(
            self.embed_dim, self.patch_size, strides=self.patch_size, padding="valid", name="proj"
        )
        self.norm = layer_norm("norm") if self.patch_norm else None

    def build(self, input_shape):
        self.proj.build((None, None, None, None, input_shape[-1]))
        if self.norm is not None:
            self.norm.build((None, None, None, None, self.embed_dim))

    def call(self, x):
        _, t, h, w, _ = ops.shape(x)
        pads = [window_ops.pad_amount(s, p) for s, p in zip((t, h, w), self.patch_size)]
        x = self.proj(window_ops.pad_end(x, pads))
        if self.norm is not None:
            x = self.norm(x)
        return x

    def compute_output_shape(self, input_shape):
        out = [input_shape[0]]
        for size, p in zip(input_shape[1:4], self.patch_size):
            out.append(None if size is None else -(-size // p))
        return tuple(out) + (self.embed_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "patch_norm": self.patch_norm,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchMerging3D(keras.layers.Layer):
    """Halves H and W (D untouched): zero-pads odd H/W at the end, concatenates the 2x2 neighbours in the
    order (even h, even w), (odd h, even w), (even h, odd w), (odd h, odd w), then LayerNorm(4C) and a
    bias-free Linear(4C -> 2C). (B, D, H, W, C) -> (B, D, ceil(H/2), ceil(W/2), 2C)."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.norm = layer_norm("norm")
        self.reduction = keras.layers.Dense(2 * self.dim, use_bias=False, name="reduction")

    def build(self, input_shape):
        self.norm.build((None, None, None, None, 4 * self.dim))
        self.reduction.build((None, None, None, None, 4 * self.dim))

    def call(self, x):
        _, _, h, w, _ = ops.shape(x)
        x = window_ops.pad_end(x, (0, window_ops.pad_amount(h, 2), window_ops.pad_amount(w, 2)))
        x = ops.concatenate(
            [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], axis=-1
        )
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        b, d, h, w, _ = input_shape
        half = lambda s: None if s is None else -(-s // 2)  # noqa: E731
        return (b, d, half(h), half(w), 2 * self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Mlp(keras.layers.Layer):
    """Linear(C -> hidden), exact GELU, dropout, Linear(hidden -> C), dropout."""

    def __init__(self, dim, hidden_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.hidden_dim = int(hidden_dim)
        self.dropout_rate = float(dropout)
        self.fc1 = keras.layers.Dense(self.hidden_dim, name="fc1")
        self.fc2 = keras.layers.Dense(self.dim, name="fc2")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape):
        self.fc1.build((None, self.dim))
        self.fc2.build((None, self.hidden_dim))

    def call(self, x, training=None):
        # Tokens as rows of one matrix (the same matmuls Dense does on N-d input): XLA:CPU reduces the
        # bias gradient over the rows of a 2-d gradient as a fast tree reduction, but over the four
        # leading axes of a 5-d one in a strided loop (1.2 s of a Swin-T training step at batch 2).
        shape = ops.shape(x)
        x = ops.reshape(x, (-1, self.dim))
        if training and self.dropout_rate == 0.0:
            # fc2 and the GELU before it as one op whose backward recomputes the GELU's output
            kernel, bias = (ops.cast(v, self.compute_dtype) for v in (self.fc2.kernel, self.fc2.bias))
            x = activations.gelu_dense_lean(self.fc1(x), kernel, bias)
        else:
            gelu = activations.gelu_erf_lean if training else activations.gelu_erf  # same values, leaner backward
            x = self.fc2(self.dropout(gelu(self.fc1(x)), training=training))
        x = self.dropout(x, training=training)
        return ops.reshape(x, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout_rate,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowAttention3D(keras.layers.Layer):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    The bias table is sized for the configured window and never changes with the input; a window that
    shrank to N tokens uses the top-left N x N block of the full window's index, as the original does.

    The layer owns the weights and the semantics (qkv and output projections, scale, bias, mask); the
    attention itself is computed by `attention.window_attention`, whose kernels (and the choice among them:
    backend, device, dtype, training, shapes) live in the `attention` module.

    call(windows, attention_mask=None): windows (B * nW, N, C); attention_mask (nW, N, N) or None
    -> (B * nW, N, C).
    """

    def __init__(
        self, dim, num_heads, window_size=(8, 7, 7), qkv_bias=True, attn_dropout=0.0, proj_dropout=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.window_size = _triple(window_size)
        self.qkv_bias = bool(qkv_bias)
        self.attn_dropout_rate = float(attn_dropout)
        self.proj_dropout_rate = float(proj_dropout)
        self.head_dim = self.dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = keras.layers.Dense(3 * self.dim, use_bias=self.qkv_bias, name="qkv")
        self.proj = keras.layers.Dense(self.dim, name="proj")
        self.attn_dropout = keras.layers.Dropout(self.attn_dropout_rate)
        self.proj_dropout = keras.layers.Dropout(self.proj_dropout_rate)
        self._index = window_ops.relative_position_index(self.window_size)

    def build(self, input_shape):
        wd, wh, ww = self.window_size
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.qkv.build((None, self.dim))
        self.proj.build((None, self.dim))

    def relative_position_bias(self, n):
        """(heads, n, n) float32 bias for windows of n tokens."""
        if window_ops.is_static(n):
            n = int(n)
            key = ("bias_index", *self.window_size, n)
            index = window_ops.cached_constant(key, lambda: self._index[:n, :n].reshape(-1))
        else:
            index = ops.reshape(ops.convert_to_tensor(self._index)[:n, :n], (-1,))
        table = ops.cast(self.relative_position_bias_table, "float32")
        bias = ops.take(table, index, axis=0)
        return ops.transpose(ops.reshape(bias, (n, n, self.num_heads)), (2, 0, 1))

    def call(self, x, attention_mask=None, training=None, num_windows=None):
        """`num_windows` (windows per clip, optional) lets a compiled graph without a mask attend to the
        windows in cache-sized groups too (`attention.select_kernel`)."""
        _, n, c = ops.shape(x)
        qkv = ops.reshape(self.qkv(x), (-1, n, 3, self.num_heads, self.head_dim))
        if attention_mask is not None:
            # Keras autocasts float call arguments to the compute dtype under mixed precision; 0 and -100
            # are exact in float16/bfloat16, so casting back to float32 restores the mask exactly.
            attention_mask = ops.cast(attention_mask, "float32")
        x = attention.window_attention(
            qkv,
            self.relative_position_bias(n),
            attention_mask,
            scale=self.scale,
            training=training,
            num_windows=num_windows,
            attention_dropout=self.attn_dropout,
            bias_table=self.relative_position_bias_table,
        )
        return self.proj_dropout(self.proj(ops.reshape(x, (-1, n, c))), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "qkv_bias": self.qkv_bias,
            "attn_dropout": self.attn_dropout_rate,
            "proj_dropout": self.proj_dropout_rate,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SwinTransformerBlock3D(keras.layers.Layer):
    """Pre-norm (shifted-)window attention block. (B, D, H, W, C) -> (B, D, H, W, C).

    The padding comes after norm1 (padded tokens are exact zeros) and is never masked; the mask only
    separates the regions that the cyclic shift brought together.
    """

    def __init__(
        self,
        dim,
        num_heads,
        window_size=(8, 7, 7),
        shift_size=(0, 0, 0),
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout=0.0,
        attn_dropout=0.0,
        drop_path=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.window_size = _triple(window_size)
        self.shift_size = _triple(shift_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout_rate = float(dropout)
        self.attn_dropout_rate = float(attn_dropout)
        self.drop_path_rate = float(drop_path)
        self.norm1 = layer_norm("norm1")
        self.attn = WindowAttention3D(
            self.dim,
            self.num_heads,
            self.window_size,
            qkv_bias=self.qkv_bias,
            attn_dropout=self.attn_dropout_rate,
            proj_dropout=self.dropout_rate,
            name="attn",
        )
        self.drop_path = StochasticDepth(self.drop_path_rate, name="drop_path")
        self.norm2 = layer_norm("norm2")
        self.mlp = Mlp(self.dim, int(self.dim * self.mlp_ratio), dropout=self.dropout_rate, name="mlp")

    def build(self, input_shape):
        feature_shape = (None, None, None, None, self.dim)
        self.norm1.build(feature_shape)
        self.attn.build((None, None, self.dim))
        self.norm2.build(feature_shape)
        self.mlp.build(feature_shape)

    def attention_branch(self, x, training=None):
        """Pad, shift, window attention, reverse, unshift, crop: the residual branch after norm1."""
        _, d, h, w, _ = ops.shape(x)
        window, shift = window_ops.effective_window_and_shift((d, h, w), self.window_size, self.shift_size)
        pads = [window_ops.pad_amount(s, wsz) for s, wsz in zip((d, h, w), window)]
        x = window_ops.pad_end(x, pads)
        padded = tuple(s + p for s, p in zip((d, h, w), pads))
        # With dynamic sizes the shift is a tensor that may be 0 at run time: shifting by 0 and an
        # all-zero mask are then exact no-ops, so one graph serves both cases.
        shifted = any(self.shift_size) and not (window_ops.is_static(*shift) and not any(shift))
        mask = None
        if shifted:
            x = window_ops.cyclic_shift(x, shift)
            mask = window_ops.shifted_window_mask(padded, window, shift)
        num_windows = None
        if window_ops.is_static(*padded, *window):
            num_windows = (padded[0] // window[0]) * (padded[1] // window[1]) * (padded[2] // window[2])
        windows = self.attn(
            window_ops.window_partition(x, window), attention_mask=mask, training=training, num_windows=num_windows
        )
        x = window_ops.window_reverse(windows, window, padded)
        if shifted:
            x = window_ops.reverse_cyclic_shift(x, shift)
        return window_ops.crop_end(x, (d, h, w))

    def call(self, x, training=None):
        x = x + self.drop_path(self.attention_branch(self.norm1(x), training=training), training=training)
        return x + self.drop_path(self.mlp(self.norm2(x), training=training), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "shift_size": self.shift_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout": self.dropout_rate,
            "attn_dropout": self.attn_dropout_rate,
            "drop_path": self.drop_path_rate,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SwinStage3D(keras.layers.Layer):
    """`depth` blocks alternating plain and shifted windows, then (optionally) patch merging.
    (B, D, H, W, C) -> (B, D, ceil(H/2), ceil(W/2), 2C) with downsampling, else unchanged."""

    def __init__(
        self,
        dim,
        depth,
        num_heads,
        window_size=(8, 7, 7),
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout=0.0,
        attn_dropout=0.0,
        drop_path=0.0,
        downsample=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.window_size = _triple(window_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout_rate = float(dropout)
        self.attn_dropout_rate = float(attn_dropout)
        rates = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * self.depth
        self.drop_path_rates = [float(r) for r in rates]
        self.downsample = bool(downsample)
        shift = tuple(w // 2 for w in self.window_size)
        self.blocks = [
            SwinTransformerBlock3D(
                self.dim,
                self.num_heads,
                self.window_size,
                shift_size=(0, 0, 0) if i % 2 == 0 else shift,
                mlp_ratio=self.mlp_ratio,
                qkv_bias=self.qkv_bias,
                dropout=self.dropout_rate,
                attn_dropout=self.attn_dropout_rate,
                drop_path=self.drop_path_rates[i],
                name=f"blocks_{i}",
            )
            for i in range(self.depth)
        ]
        self.merging = PatchMerging3D(self.dim, name="downsample") if self.downsample else None

    def build(self, input_shape):
        for block in self.blocks:
            block.build((None, None, None, None, self.dim))
        if self.merging is not None:
            self.merging.build((None, None, None, None, self.dim))

    def call(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        if self.merging is not None:
            x = self.merging(x)
        return x

    def compute_output_shape(self, input_shape):
        if self.merging is None:
            return input_shape
        return self.merging.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout": self.dropout_rate,
            "attn_dropout": self.attn_dropout_rate,
            "drop_path": self.drop_path_rates,
            "downsample": self.downsample,
        }


def drop_path_rates(depths, drop_path_rate):
    """The official per-block stochastic depth rates: linspace(0, rate, sum(depths)) cut per stage."""
    rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
    out, start = [], 0
    for depth in depths:
        out.append(rates[start : start + depth])
        start += depth
    return out
