"""End to end against torchvision swin3d_*: random weights saved in both layouts, converted by our
converter (no torch on that path), compared in float32 eval mode with rtol = atol = 1e-5."""

import re

import numpy as np
import pytest

from tests import reference
from tests.models.helpers import record_kernels
from video_swin.checkpoints import convert
from video_swin.models import presets
from video_swin.models.layers import WindowAttention3D
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

RTOL = ATOL = 1e-5

# (B, T, H, W): what each shape exercises is in the comment.
TINY_SHAPES = [
    (1, 32, 224, 224),  # the published input; temporal shift (D = 16 > 8)
    (1, 16, 224, 224),  # D = 8 = window: shrink by equality, no temporal shift; last stage 7x7 unshifted
    (1, 5, 50, 70),  # odd sizes: patch padding, odd merges
    (1, 3, 33, 33),  # odd and tiny
    (1, 20, 112, 96),  # non-square, temporal shift with padding (D = 10)
    (1, 8, 96, 128),  # non-square
    (1, 4, 64, 64),  # T shorter than the window; spatial windows shrink in stages 3-4
    (3, 18, 64, 80),  # batch 3, temporal shift (D = 9)
    (1, 1, 16, 16),  # one frame, a few pixels: every window shrinks to 1 token at the end
    (1, 18, 256, 288),  # H, W > 224: the last stage shifts spatially (8x9 tokens > 7)
    (2, 10, 160, 120),  # batch 2, padding in every stage
    (1, 33, 100, 37),  # odd T, thin frames
]


def _channels_last_input(shape, seed):
    b, t, h, w = shape
    return np.random.default_rng(seed).standard_normal((b, t, h, w, 3)).astype("float32")


@pytest.fixture(scope="module")
def converted(tiny_checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("presets")
    return {name: convert.convert_checkpoint(path, out / name) for name, path in tiny_checkpoints.items()}


@pytest.mark.parametrize("layout", ["torchvision_pth", "official_pth"])
def test_tiny_end_to_end_many_shapes_one_model(layout, converted, tiny_reference):
    model = presets.from_preset(converted[layout])  # one model object serves every shape
    # The official layout converts to bit-identical weights (next test), so a subset of shapes suffices.
    shapes = TINY_SHAPES if layout == "torchvision_pth" else [TINY_SHAPES[i] for i in (0, 2, 7)]
    for i, shape in enumerate(shapes):
        x = _channels_last_input(shape, i)
        np.testing.assert_allclose(
            np.asarray(model(x)), reference.run_reference(tiny_reference, x), rtol=RTOL, atol=ATOL,
            err_msg=f"logits at {shape}",
        )
        if layout == "torchvision_pth":
            np.testing.assert_allclose(
                np.asarray(model.backbone(x)), reference.run_reference(tiny_reference, x, features=True),
                rtol=RTOL, atol=ATOL, err_msg=f"features at {shape}",
            )


def test_all_layouts_convert_to_the_same_weights(converted):
    models = {name: presets.from_preset(path) for name, path in converted.items()}
    first = [v.numpy() for v in models["torchvision_pth"].weights]
    for name, model in models.items():
        for a, b in zip(first, [v.numpy() for v in model.weights]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_tiny_predict_as_compiled_for_the_cpu_against_torchvision(converted, tiny_reference, monkeypatch):
    """`predict_on_batch` as users get it on a CPU (XLA; stages 1-2 at 224x224 attend in groups of windows;
    the softmax of unmasked windows with bounded offsets, `attention.bounded_offsets`), not the eager path the
    other tests run."""
    taken = record_kernels(monkeypatch)
    model = presets.from_preset(converted["torchvision_pth"])
    for i, shape in enumerate([(1, 16, 224, 224), (1, 20, 112, 96)]):  # the benchmark's input; temporal shift
        x = _channels_last_input(shape, 20 + i)
        np.testing.assert_allclose(
            model.predict_on_batch(x), reference.run_reference(tiny_reference, x), rtol=RTOL, atol=ATOL,
            err_msg=f"logits at {shape}",
        )
    np.testing.assert_allclose(
        model.backbone.predict_on_batch(x), reference.run_reference(tiny_reference, x, features=True),
        rtol=RTOL, atol=ATOL, err_msg=f"features at {shape}",
    )
    # Every unshifted (even) block's, and stage 4's shifted block at 16x224x224 (8 x 7 x 7 tokens: no shift).
    attention_layers = {layer.path for layer in model._flatten_layers() if isinstance(layer, WindowAttention3D)}
    assert len(attention_layers) == sum(model.backbone.depths)
    unshifted = {path for path in attention_layers if int(re.search(r"blocks_(\d+)", path).group(1)) % 2 == 0}
    bounded_in = {path for path, _, choice in taken if choice.kernel == "bounded_offsets"}
    assert bounded_in == unshifted | {"layers_3/blocks_1/attn"}


@pytest.mark.parametrize(
    "variant,window,shapes",
    [
        ("small", (8, 7, 7), [(1, 18, 64, 64), (2, 6, 96, 80)]),
        # Swin-B at its own window: the widest official model, 40 s in both oneDNN passes of CI (slow); the
        # base case below (the SSv2 window) keeps Swin-B's widths in every run.
        pytest.param("base", (8, 7, 7), [(1, 18, 64, 64), (1, 5, 70, 50)], marks=pytest.mark.slow),
        ("base", (16, 7, 7), [(1, 34, 64, 64)]),  # the SSv2 window; D = 17 > 16 shifts by 8 in time
    ],
)
def test_other_variants_and_window(variant, window, shapes, tmp_path):
    ref = reference.randomized_reference(variant, seed=3, window_size=window, num_classes=174)
    path = reference.save_checkpoints(ref, tmp_path)["official_pth"]
    preset = convert.convert_checkpoint(path, tmp_path / "preset")
    model = presets.from_preset(preset)
    assert tuple(model.backbone.window_size) == window
    for i, shape in enumerate(shapes):
        x = _channels_last_input(shape, 100 + i)
        np.testing.assert_allclose(
            np.asarray(model(x)), reference.run_reference(ref, x), rtol=RTOL, atol=ATOL, err_msg=str(shape)
        )


@pytest.mark.parametrize("variant,expected", [("tiny", 28_158_070), ("small", 49_816_678), ("base", 88_048_984)])
def test_parameter_counts_equal_torchvision(variant, expected):
    ref = reference.build_reference(variant)
    ours = VideoSwinClassifier(VideoSwinBackbone.from_variant(variant), num_classes=400)
    assert ours.count_params() == sum(p.numel() for p in ref.parameters()) == expected


def test_large_builds_from_its_configuration():
    model = VideoSwinClassifier(VideoSwinBackbone.from_variant("large"), num_classes=400)
    assert model.count_params() == 196_953_916


def test_weights_from_one_size_serve_another(converted, tiny_reference):
    """Variables never depend on the input size: converted from a checkpoint trained at 32x224x224,
    used at 8x112x160 (the first test runs 32x224x224 and then other sizes through one model object)."""
    model = presets.from_preset(converted["official_safetensors"])
    shapes_of = [tuple(v.shape) for v in model.weights]
    for shape in [(1, 8, 112, 160), (2, 18, 64, 64)]:
        x = _channels_last_input(shape, 7)
        np.testing.assert_allclose(np.asarray(model(x)), reference.run_reference(tiny_reference, x), rtol=RTOL, atol=ATOL)
    assert [tuple(v.shape) for v in model.weights] == shapes_of
