"""The Video Swin backbone (keras-hub style functional model with a round-tripping config)."""

from __future__ import annotations

import copy

import keras

from video_swin.models.inference import XlaInference, chain
from video_swin.models.layers import PACKAGE, BackgroundDifference, PatchEmbedding3D, SwinStage3D, drop_path_rates, layer_norm

# Official configurations (patch (2, 4, 4), mlp_ratio 4, qkv_bias True, patch_norm True everywhere).
VARIANTS = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
    "large": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)},
}


def check_pixels(x):
    """Refuses inputs that cannot be (B, T, H, W, 3) float normalised pixels, with one clear line."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 5 or (shape[-1] is not None and shape[-1] != 3):
        raise ValueError(f"expected pixels of shape (B, T, H, W, 3), got shape {shape}")
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", "float32"))
    if "float" not in dtype:
        raise ValueError(
            f"expected float normalised pixels, got {dtype}: normalise uint8 frames first "
            "(video_swin.data.preprocess.NormalizePixels or the preset's protocol)"
        )


def variant_config(variant, **overrides):
    """Backbone keyword arguments for a named variant, with overrides (window_size, drop_path_rate...)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return {**copy.deepcopy(VARIANTS[variant]), **overrides}


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoSwinBackbone(XlaInference, keras.Model):
    """(B, T, H, W, 3) normalised pixels -> (B, ceil(T/2), H/32, W/32, 8C) features after the final norm.

    T, H and W are `None` in the model's input, so one built model runs on any clip size; no variable
    depends on the input size. `background_difference=True` puts `layers.BackgroundDifference` in front
    of the patch embedding (for models trained from scratch on flat-background clips; never in the
    official models, which the parity tests hold to torchvision).
    """

    def __init__(
        self,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=(8, 7, 7),
        patch_size=(2, 4, 4),
        mlp_ratio=4.0,
        qkv_bias=True,
        patch_norm=True,
        dropout=0.0,
        attn_dropout=0.0,
        drop_path_rate=0.2,
        background_difference=False,
        **kwargs,
    ):
        depths = tuple(int(d) for d in depths)
        num_heads = tuple(int(h) for h in num_heads)
        window_size = tuple(int(w) for w in window_size)
        patch_size = tuple(int(p) for p in patch_size)
        rates = drop_path_rates(depths, drop_path_rate)

        inputs = keras.Input(shape=(None, None, None, 3), name="pixels")
        x = BackgroundDifference(name="background_difference")(inputs) if background_difference else inputs
        x = PatchEmbedding3D(patch_size, embed_dim, patch_norm=patch_norm, name="patch_embed")(x)
        x = keras.layers.Dropout(dropout, name="pos_drop")(x)
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            x = SwinStage3D(
                embed_dim * 2**i,
                depth,
                heads,
                window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                dropout=dropout,
                attn_dropout=attn_dropout,
                drop_path=rates[i],
                downsample=i < len(depths) - 1,
                name=f"layers_{i}",
            )(x)
        x = layer_norm("norm")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        self.embed_dim = int(embed_dim)
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = window_size
        self.patch_size = patch_size
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.patch_norm = bool(patch_norm)
        self.dropout = float(dropout)
        self.attn_dropout = float(attn_dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.background_difference = bool(background_difference)

    def __call__(self, x, *args, **kwargs):
        check_pixels(x)
        return super().__call__(x, *args, **kwargs)

    def _inference_segments(self):
        """One function per stage: the first begins with the patch embedding, the last ends with the final
        norm (each compiled by XLA on its own; see `predict_on_batch`)."""
        stages = [[self.get_layer(f"layers_{i}")] for i in range(len(self.depths))]
        entry = [self.get_layer("background_difference")] if self.background_difference else []
        stages[0][:0] = entry + [self.get_layer("patch_embed"), self.get_layer("pos_drop")]
        stages[-1].append(self.get_layer("norm"))
        return [chain(layers, check=check_pixels if i == 0 else None) for i, layers in enumerate(stages)]

    @property
    def num_features(self):
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @classmethod
    def from_variant(cls, variant, **overrides):
        return cls(**variant_config(variant, **overrides))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "embed_dim": self.embed_dim,
            "depths": list(self.depths),
            "num_heads": list(self.num_heads),
            "window_size": list(self.window_size),
            "patch_size": list(self.patch_size),
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "patch_norm": self.patch_norm,
            "dropout": self.dropout,
            "attn_dropout": self.attn_dropout,
            "drop_path_rate": self.drop_path_rate,
            "background_difference": self.background_difference,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


