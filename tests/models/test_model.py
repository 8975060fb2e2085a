"""Model behaviour that needs no reference: config round-trips, save/load, dynamic shapes, training mode."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from video_swin.models import layers
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

SMALL_ARCH = dict(embed_dim=24, depths=(2, 2), num_heads=(2, 4), window_size=(4, 3, 3), drop_path_rate=0.2)


def _tiny_model(num_classes=5, seed=0, **kw):
    """Built from its own seed: the weights do not depend on which tests ran before."""
    keras.utils.set_random_seed(seed)
    return VideoSwinClassifier(VideoSwinBackbone(**{**SMALL_ARCH, **kw}), num_classes=num_classes)


def _clip(shape=(2, 6, 20, 18), seed=0):
    return np.random.default_rng(seed).standard_normal(shape + (3,)).astype("float32")


LAYER_CASES = [
    layers.BackgroundDifference(offset=0.3),
    layers.StochasticDepth(0.3, seed=1),
    layers.PatchEmbedding3D((2, 4, 4), 24, patch_norm=True),
    layers.PatchMerging3D(24),
    layers.Mlp(24, 96, dropout=0.1),
    layers.WindowAttention3D(24, 2, (4, 3, 3), qkv_bias=False, attn_dropout=0.1, proj_dropout=0.2),
    layers.SwinTransformerBlock3D(24, 2, (4, 3, 3), (2, 1, 1), drop_path=0.1),
    layers.SwinStage3D(24, 3, 2, (4, 3, 3), drop_path=[0.0, 0.1, 0.2], downsample=True),
]


@pytest.mark.parametrize("layer", LAYER_CASES, ids=lambda layer: type(layer).__name__)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_model_config_round_trip():
    model = _tiny_model()
    clone = VideoSwinClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.backbone.get_config() == model.backbone.get_config()


def test_keras_and_weights_files_reload_bit_identical(tmp_path):
    model = _tiny_model()
    x = _clip()
    expected = np.asarray(model(x))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(reloaded(x)), expected)
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = _tiny_model(seed=1)  # other weights until the file is loaded
    assert not np.array_equal(np.asarray(fresh(x)), expected)
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(np.asarray(fresh(x)), expected)


def test_one_graph_with_dynamic_t_h_w_equals_eager():
    """A tf.function traced once with T, H, W = None gives the eager results at every size: the window
    shrink, shift, padding and mask are decided inside the graph from the runtime shape."""
    model = _tiny_model()
    graph = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((None, None, None, None, 3), tf.float32)])
    shapes = [(1, 6, 20, 18), (2, 12, 40, 44), (1, 1, 4, 4), (1, 9, 13, 30)]
    for i, shape in enumerate(shapes):
        x = _clip(shape, i)
        np.testing.assert_allclose(graph(x).numpy(), np.asarray(model(x)), rtol=1e-5, atol=1e-6, err_msg=str(shape))
    assert len(graph._list_all_concrete_functions()) == 1


def test_variables_do_not_depend_on_input_size():
    model = _tiny_model()
    before = [(v.path, tuple(v.shape)) for v in model.weights]
    for shape in [(1, 2, 8, 8), (1, 20, 64, 40)]:
        model(_clip(shape))
    assert [(v.path, tuple(v.shape)) for v in model.weights] == before


def test_drop_path_rates_follow_the_official_linspace():
    rates = layers.drop_path_rates((2, 2, 6, 2), 0.2)
    flat = [r for stage in rates for r in stage]
    np.testing.assert_allclose(flat, np.linspace(0, 0.2, 12))
    backbone = VideoSwinBackbone.from_variant("tiny", drop_path_rate=0.2)
    got = [b.drop_path_rate for i in range(4) for b in backbone.get_layer(f"layers_{i}").blocks]
    np.testing.assert_allclose(got, np.linspace(0, 0.2, 12))


def test_stochastic_depth_is_per_sample_and_unbiased():
    layer = layers.StochasticDepth(0.25, seed=3)
    x = np.ones((4000, 3, 2), "float32")
    y = np.asarray(layer(x, training=True))
    per_sample = y.reshape(4000, -1)
    assert np.all((per_sample == 0).all(1) | np.isclose(per_sample, 1 / 0.75).all(1))  # whole samples
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_training_mode_is_stochastic_and_inference_deterministic():
    model = _tiny_model(dropout=0.1, attn_dropout=0.1)
    x = _clip()
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=True)))
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 8, 32, 32), "float32"), "expected"),  # rank 4
        (np.zeros((1, 8, 32, 32, 1), "float32"), "expected"),  # one channel
    ],
)
def test_wrong_inputs_are_refused(bad, match):
    model = _tiny_model()
    with pytest.raises(ValueError, match=match):
        model(bad)


def test_integer_input_is_refused():
    with pytest.raises(ValueError, match="float normalised pixels"):
        _tiny_model()(np.zeros((1, 4, 16, 16, 3), "uint8"))


def _shape_on_background(fg, bg, T=6, H=32, W=40):
    """A rectangle moving right, colour `fg`, on a solid `bg`: (1, T, H, W, 3) float32, and its mask."""
    mask = np.zeros((T, H, W, 1), bool)
    for t in range(T):
        mask[t, 10:18, 4 + 3 * t : 12 + 3 * t] = True
    return np.where(mask, np.float32(fg), np.float32(bg))[None].astype("float32"), mask[None]


def test_background_difference_sees_the_contrast_not_the_colours():
    """Colours swapped between shape and background (the contrast's sign flipped in every channel) give
    the same input to the patch embedding: |fg - bg| on the shape, zero on the background (less the
    constant offset)."""
    rng = np.random.default_rng(0)
    fg, bg = rng.uniform(-2, 2, 3), rng.uniform(-2, 2, 3)
    a, mask = _shape_on_background(fg, bg)
    b, _ = _shape_on_background(bg, fg)
    layer = layers.BackgroundDifference(offset=0.25)
    expected = np.where(mask, np.abs(fg - bg).astype("float32"), np.float32(0)) - np.float32(0.25)
    np.testing.assert_allclose(np.asarray(layer(a)), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer(b)), expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 16, 64, 64), (1, 5, 33, 70), (1, 1, 4, 4)])
def test_background_difference_against_numpy(shape):
    """The median over the sampled grid (every 2nd frame, every 8th row and column), per clip and channel,
    as NumPy computes it; in float32 under a mixed-precision policy too."""
    x = _clip(shape, seed=3) * 40 + 100
    expected = np.abs(x - np.median(x[:, ::2, ::8, ::8], axis=(1, 2, 3), keepdims=True)) - 0.15
    np.testing.assert_allclose(np.asarray(layers.BackgroundDifference()(x)), expected, rtol=0, atol=1e-5)
    graph = tf.function(layers.BackgroundDifference(), jit_compile=True)
    np.testing.assert_allclose(graph(x).numpy(), expected, rtol=0, atol=1e-5)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = layers.BackgroundDifference()
    finally:
        keras.config.set_dtype_policy("float32")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(y), expected, rtol=0, atol=1e-5)


def test_backbone_with_background_difference_round_trips_and_is_off_by_default(tmp_path):
    from video_swin.models import presets

    assert VideoSwinBackbone(**SMALL_ARCH).get_config()["background_difference"] is False
    model = _tiny_model(background_difference=True)
    assert model.backbone.get_layer("background_difference") is not None
    clone = VideoSwinClassifier.from_config(model.get_config())
    assert clone.backbone.get_config() == model.backbone.get_config()
    # the stem is applied: a brightness shift of the whole clip changes nothing, unlike without it
    x = _clip()
    np.testing.assert_allclose(np.asarray(model(x + 0.5)), np.asarray(model(x)), atol=1e-5)
    plain = _tiny_model()
    assert not np.allclose(np.asarray(plain(x + 0.5)), np.asarray(plain(x)), atol=1e-3)
    path = presets.save_preset(model, tmp_path / "p", class_names=list("abcde"))
    loaded = presets.from_preset(path)
    assert loaded.backbone.background_difference
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    # the official presets' config.json keeps its keys: the stem is written only when it is on
    assert "background_difference" not in presets.architecture_of(plain)
