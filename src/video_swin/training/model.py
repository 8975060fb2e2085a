"""Classifiers for training: any preset's backbone with a fresh head, frozen stages kept in inference
mode, and activation recomputation (rematerialisation) per block."""

from __future__ import annotations

import numpy as np

from video_swin.models.precision import dtype_policy

# Small architectures for training from scratch (`--arch`), next to the official variants.
SCRATCH_ARCHS = {
    # The shipped synthetic-motion model: 16 x 64 x 64 clips -> 4 x 8 x 8 tokens of 4 frames x 8 x 8 px.
    "synthetic-small": {
        "embed_dim": 48, "depths": (2, 2), "num_heads": (3, 6), "window_size": (4, 4, 4),
        "patch_size": (4, 8, 8), "drop_path_rate": 0.0,
    },
    # Very small ones for tests.
    "test-nano": {
        "embed_dim": 8, "depths": (1,), "num_heads": (1,), "window_size": (2, 2, 2),
        "patch_size": (2, 4, 4), "drop_path_rate": 0.0,
    },
    "test-micro": {
        "embed_dim": 8, "depths": (1, 1), "num_heads": (1, 2), "window_size": (2, 2, 2),
        "patch_size": (2, 4, 4), "drop_path_rate": 0.0,
    },
}


OFFICIAL_VARIANTS = ("tiny", "small", "base", "large")  # video_swin.models.VARIANTS (importing it imports Keras)


def arch_names():
    return list(OFFICIAL_VARIANTS) + list(SCRATCH_ARCHS)


def architecture_for(arch: str, **overrides) -> dict:
    from video_swin.models import VARIANTS, variant_config

    if arch in SCRATCH_ARCHS:
        config = dict(SCRATCH_ARCHS[arch])
    elif arch in VARIANTS:
        config = variant_config(arch)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(arch_names())}")
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def build_classifier(num_classes, preset=None, arch=None, head_dropout=0.5, drop_path_rate=None,
                     frozen_stages=-1, remat=False, precision="float32", architecture=None,
                     background_difference=None):
    """A VideoSwinClassifier with a fresh `num_classes` head.

    preset: a preset folder or registered name (classifier or backbone-only): its backbone weights are loaded; arch: a
    name from `arch_names()` for training from scratch; architecture: explicit backbone kwargs.
    drop_path_rate overrides the preset's / arch's stochastic depth. frozen_stages: -1 none, 0 the patch
    embedding, k >= 1 the patch embedding and the first k stages (not trainable, always in inference
    mode). remat: recompute every trainable block's activations in the backward pass.
    background_difference: True/False sets the input stem of an arch/architecture; None keeps what the
    preset / arch has (a preset's backbone learnt with or without it, so a contradicting value is refused).
    """
    from video_swin.models import presets
    from video_swin.models import VideoSwinBackbone, VideoSwinClassifier
    from video_swin.zoo import resolve as zoo_resolve

    source_weights = None
    if preset is not None:
        loaded = zoo_resolve.load_preset(preset)
        config = {k: v for k, v in loaded.config["architecture"].items() if k in presets.ARCHITECTURE_KEYS}
        with dtype_policy("float32"):
            source = loaded.load_model()
        source_backbone = source.backbone if isinstance(source, VideoSwinClassifier) else source
        source_weights = [np.asarray(w) for w in source_backbone.get_weights()]
        del source, source_backbone
    elif architecture is not None:
        config = dict(architecture)
    elif arch is not None:
        config = architecture_for(arch)
    else:
        raise ValueError("give a preset, an arch or an architecture")
    if background_difference is not None:
        if preset is not None and bool(background_difference) != bool(config.get("background_difference", False)):
            raise ValueError(f"{preset} was trained {'without' if background_difference else 'with'} the "
                             "background-difference input; it cannot be switched when fine-tuning")
        config["background_difference"] = bool(background_difference)
    if drop_path_rate is not None:
        config["drop_path_rate"] = float(drop_path_rate)
    with dtype_policy(precision):
        backbone = VideoSwinBackbone(**config)
        if source_weights is not None:
            backbone.set_weights(source_weights)
        model = VideoSwinClassifier(backbone, num_classes=int(num_classes), head_dropout=head_dropout)
    freeze_stages(model, frozen_stages)
    if remat:
        enable_remat(model)
    return model


def _inference_only(layer):
    """Makes `layer` ignore the training flag (always inference: no dropout / stochastic depth)."""
    import inspect

    if getattr(layer, "_video_swin_frozen", False):
        return
    original = layer.call
    if "training" not in inspect.signature(original).parameters:
        layer._video_swin_frozen = True  # no training-dependent behaviour to switch off
        return

    def call(*args, training=None, **kwargs):
        return original(*args, training=False, **kwargs)

    layer.call = call
    layer._video_swin_frozen = True


def freeze_stages(model, frozen_stages: int):
    """The official `frozen_stages`: -1 nothing; >= 0 the patch embedding; k >= 1 also stages 0..k-1.
    Frozen layers are not trainable and always run in inference mode."""
    frozen_stages = int(frozen_stages)
    if frozen_stages < 0:
        return []
    backbone = model.backbone
    if frozen_stages > len(backbone.depths):
        raise ValueError(f"frozen_stages {frozen_stages} > the model's {len(backbone.depths)} stages")
    layers = [backbone.get_layer("patch_embed"), backbone.get_layer("pos_drop")]
    layers += [backbone.get_layer(f"layers_{i}") for i in range(frozen_stages)]
    for layer in layers:
        layer.trainable = False
        _inference_only(layer)
    return layers


def blocks(model):
    """Every SwinTransformerBlock3D of a classifier or backbone."""
    backbone = getattr(model, "backbone", model)
    out = []
    for i in range(len(backbone.depths)):
        out.extend(backbone.get_layer(f"layers_{i}").blocks)
    return out


def _seed_state_variables(layer):
    """The state variables of every SeedGenerator used inside `layer` (dropout, stochastic depth)."""
    import keras

    out, seen = [], set()
    for sub in layer._flatten_layers(include_self=True):
        for value in vars(sub).values():
            if isinstance(value, keras.random.SeedGenerator) and id(value) not in seen:
                seen.add(id(value))
                out.append(value.state)
    return out


def enable_remat(model):
    """Activation recomputation per block: each trainable block's forward keeps only its input; the
    backward pass runs the block again. Random layers inside a block (dropout, stochastic depth) see the
    same seeds in the recomputation as in the forward pass, so gradients are exact.
    (keras.RematScope / tf.recompute_grad would redraw those masks.)"""
    rematted = []
    for block in blocks(model):
        if not block.trainable or getattr(block, "_video_swin_remat", False):
            continue
        _remat_block(block)
        rematted.append(block)
    return rematted


def _remat_block(block):
    import tensorflow as tf

    original = block.call
    seed_states = _seed_state_variables(block)

    def call(x, training=None, **kwargs):
        if not training:
            return original(x, training=training, **kwargs)

        @tf.custom_gradient
        def forward(x_in):
            saved = [tf.identity(s.value) for s in seed_states]
            y = original(x_in, training=training, **kwargs)

            def backward(dy, variables=None):
                variables = list(variables or [])
                with tf.control_dependencies([dy]):
                    restore = [s.assign(v) for s, v in zip(seed_states, saved)]
                with tf.control_dependencies(restore + [dy]):
                    x_again = tf.identity(x_in)
                with tf.GradientTape() as tape:
                    tape.watch(x_again)
                    for v in variables:
                        tape.watch(v)
                    y_again = original(x_again, training=training, **kwargs)
                grads = tape.gradient(y_again, [x_again] + variables, output_gradients=dy)
                return grads[0], grads[1:]

            return y, backward

        return forward(x)

    block.call = call
    block._video_swin_remat = True
