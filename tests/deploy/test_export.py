"""Exports (SavedModel, TFLite/LiteRT, ONNX): each artefact is run in its own runtime and compared with the
Keras model's float32 output on the same inputs in the same test (max abs logit error <= 1e-4)."""

import io
import json
import os
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import keras
import tensorflow as tf

from tests.helpers import assert_one_line_error
from video_swin import cli, files
from video_swin.deploy import export
from video_swin.data import preprocess
from video_swin.models import presets
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier

ATOL = 1e-4
# A small architecture for speed: two stages (patch merging between them), window (4, 3, 3) so that
# clips of >= 10 frames shift in time; every shape below uses padding, shrink, shift or masks.
SMALL_ARCH = dict(embed_dim=24, depths=(2, 2), num_heads=(2, 4), window_size=(4, 3, 3), drop_path_rate=0.1)
CLASS_NAMES = ["left", "right", "up", "down", "still"]
PROTOCOL = {**presets.KINETICS_PROTOCOL, "clip_len": 8, "crop_size": 48}


def _clip(shape, seed):
    return np.random.default_rng(seed).standard_normal(tuple(shape) + (3,)).astype("float32")


def _frames(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, tuple(shape) + (3,), dtype=np.uint8)


def _normalize(frames):
    """The package's own (numpy) normalisation with the preset's protocol, outside any graph."""
    return preprocess.normalize(frames, PROTOCOL["mean"], PROTOCOL["std"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = VideoSwinClassifier(VideoSwinBackbone(**SMALL_ARCH), num_classes=len(CLASS_NAMES))
    model(_clip((1, 4, 16, 16), 0))
    path = presets.save_preset(
        model, tmp_path_factory.mktemp("export") / "small_preset", class_names=CLASS_NAMES, preprocessing=PROTOCOL
    )
    return path, presets.from_preset(path)


def _tflite_ops(path):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    text = buffer.getvalue()
    return text


def _assert_builtin_only(path):
    text = _tflite_ops(path)
    assert "Op#0" in text
    assert "Flex" not in text and "CUSTOM" not in text.upper().replace("CUSTOM_OPTIONS", ""), text[:2000]


# -------------------------------------------------------------------------------------------------------
# SavedModel


SERVING_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    import keras

    path, inputs, outputs = sys.argv[1:4]
    data = np.load(inputs)
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "normalized", "serve"}, list(loaded.signatures)
    layer = keras.layers.TFSMLayer(path)  # endpoint "serve": float32 normalised pixels
    result = {}
    for i in range(int(data["count"])):
        frames, pixels = data[f"frames{i}"], data[f"pixels{i}"]
        result[f"sig_uint8_{i}"] = loaded.signatures["serving_default"](frames=tf.constant(frames))["logits"].numpy()
        result[f"sig_float_{i}"] = loaded.signatures["normalized"](pixels=tf.constant(pixels))["logits"].numpy()
    result["layer_float"] = layer(data["pixels0"])["logits"].numpy()
    result["layer_float_big"] = layer(data["pixels1"])["logits"].numpy()
    assert not any(name.startswith("video_swin") for name in sys.modules), "video_swin was imported"
    np.savez(outputs, **result)
    """
)


def test_savedmodel_one_artefact_dynamic_batch_t_h_w_without_the_package(small, tmp_path):
    preset, model = small
    out = export.export(preset, tmp_path / "saved_model", "savedmodel", model=model)
    meta = json.loads((out / "assets" / export.METADATA_ASSET).read_text())
    assert meta["class_names"] == CLASS_NAMES and meta["preprocessing"]["mean"] == PROTOCOL["mean"]
    # One artefact: 8x112x112 (batch 2), 32x224x224, and odd 5x33x47 (shifts, padding, shrink differ).
    shapes = [(2, 8, 112, 112), (1, 32, 224, 224), (1, 5, 33, 47)]
    data = {"count": len(shapes)}
    for i, shape in enumerate(shapes):
        data[f"frames{i}"] = _frames(shape, i)
        data[f"pixels{i}"] = _clip(shape, 10 + i)
    np.savez(tmp_path / "in.npz", **data)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", SERVING_SCRIPT, str(out), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        cwd=tmp_path, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    for i, shape in enumerate(shapes):
        want_uint8 = np.asarray(model(_normalize(data[f"frames{i}"])))
        want_float = np.asarray(model(data[f"pixels{i}"]))
        np.testing.assert_allclose(got[f"sig_uint8_{i}"], want_uint8, rtol=0, atol=ATOL, err_msg=f"uint8 {shape}")
        np.testing.assert_allclose(got[f"sig_float_{i}"], want_float, rtol=0, atol=ATOL, err_msg=f"float {shape}")
        if i < 2:  # keras.layers.TFSMLayer
            np.testing.assert_allclose(got["layer_float" + ("_big" if i else "")], want_float, rtol=0, atol=ATOL)


# -------------------------------------------------------------------------------------------------------
# TFLite / LiteRT


def test_tflite_builtin_ops_dynamic_batch_three_clip_shapes(small, tmp_path):
    preset, model = small
    # The CLI with the protocol's default clip (8 x 48 x 48), then two explicit clips: odd, and non-square
    # with a temporal shift (D = 9 > 4).
    out = tmp_path / "default.tflite"
    assert cli.main(["export", str(preset), str(out), "--format", "tflite"]) == 0
    cases = [(out, (2, 8, 48, 48))]
    for clip_shape, batch in [((5, 33, 47), 1), ((18, 40, 56), 3)]:
        path = export.export(preset, tmp_path / f"{clip_shape}.tflite", "tflite", frames=clip_shape[0],
                             size=clip_shape[1:], model=model)
        cases.append((path, (batch, *clip_shape)))
    for i, (path, shape) in enumerate(cases):
        _assert_builtin_only(path)
        x = _clip(shape, 20 + i)
        want = np.asarray(model(x))
        for xnnpack in (True, False):
            got = export.tflite_predict(path, x, use_xnnpack=xnnpack)
            np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"{shape} xnnpack={xnnpack}")
        np.testing.assert_allclose(export.tflite_predict(path, x[:1]), want[:1], rtol=0, atol=ATOL)  # batch resized


def test_tflite_uint8_input_normalises_in_the_graph(small, tmp_path):
    preset, model = small
    path = export.export(preset, tmp_path / "u8.tflite", "tflite", frames=6, size=(40, 32), input_kind="uint8",
                         model=model)
    frames = _frames((2, 6, 40, 32), 3)
    np.testing.assert_allclose(
        export.tflite_predict(path, frames), np.asarray(model(_normalize(frames))), rtol=0, atol=ATOL
    )


def test_tflite_int8_dynamic_range_runs_and_stays_close(small, tmp_path):
    preset, model = small
    float_path = export.export(preset, tmp_path / "f.tflite", "tflite", frames=8, size=(48, 48), model=model)
    int8_path = export.export(preset, tmp_path / "q.tflite", "tflite", frames=8, size=(48, 48), quantize=True,
                              model=model)
    _assert_builtin_only(int8_path)
    assert int8_path.stat().st_size < 0.8 * float_path.stat().st_size
    x = _clip((4, 8, 48, 48), 4)
    want = np.asarray(model(x))
    got = export.tflite_predict(int8_path, x)
    assert np.isfinite(got).all()
    assert not np.array_equal(got, export.tflite_predict(float_path, x))  # really quantised
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())


def test_tflite_swin_t_float32(tmp_path):
    """The real architecture (Swin-T, 28 M parameters) exported to TFLite builtins: 8x64x64, batch 2."""
    keras.utils.set_random_seed(1)
    model = VideoSwinClassifier(VideoSwinBackbone.from_variant("tiny"), num_classes=10)
    x = _clip((2, 8, 64, 64), 5)
    want = np.asarray(model(x))
    preset = presets.save_preset(model, tmp_path / "tiny")
    path = export.export(preset, tmp_path / "tiny.tflite", "tflite", frames=8, size=(64, 64), model=model)
    _assert_builtin_only(path)
    np.testing.assert_allclose(export.tflite_predict(path, x), want, rtol=0, atol=ATOL)


# -------------------------------------------------------------------------------------------------------
# ONNX


def test_onnx_dynamic_batch_t_h_w(small, tmp_path):
    import onnx  # the `export` extra is part of the `test` extra: a missing package fails here, never skips

    preset, model = small
    path = export.export(preset, tmp_path / "model.onnx", "onnx", model=model)
    proto = onnx.load(str(path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["video_swin"])
    assert meta["class_names"] == CLASS_NAMES
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_value") for d in dims] == [False, False, False, False, True]  # B, T, H, W dynamic
    for i, shape in enumerate([(2, 8, 48, 48), (1, 5, 33, 47), (3, 18, 40, 56)]):
        x = _clip(shape, 30 + i)
        np.testing.assert_allclose(export.onnx_predict(path, x), np.asarray(model(x)), rtol=0, atol=ATOL, err_msg=str(shape))


def test_background_difference_stem_in_every_format(tmp_path):
    """A model with the background-difference input stem (its median is a sort inside the graph), as the
    shipped synthetic-motion preset has: SavedModel, TFLite (builtin ops only) and ONNX all match Keras."""
    keras.utils.set_random_seed(2)
    model = VideoSwinClassifier(VideoSwinBackbone(**SMALL_ARCH, background_difference=True), num_classes=5)
    x = _clip((2, 8, 48, 48), 40) + 0.7  # a shifted colour: the median is not ~0
    want = np.asarray(model(x))
    preset = presets.save_preset(model, tmp_path / "stem", class_names=CLASS_NAMES, preprocessing=PROTOCOL)
    saved = export.export(preset, tmp_path / "sm", "savedmodel", model=model)
    got = tf.saved_model.load(str(saved)).signatures["normalized"](pixels=tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    lite = export.export(preset, tmp_path / "stem.tflite", "tflite", frames=8, size=(48, 48), model=model)
    _assert_builtin_only(lite)
    np.testing.assert_allclose(export.tflite_predict(lite, x), want, rtol=0, atol=ATOL)
    onnx_path = export.export(preset, tmp_path / "stem.onnx", "onnx", model=model)
    np.testing.assert_allclose(export.onnx_predict(onnx_path, x), want, rtol=0, atol=ATOL)


# -------------------------------------------------------------------------------------------------------
# Impossible requests, missing packages, atomic writes


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(fmt="tflite", dynamic=True), "TFLite cannot keep T, H, W dynamic"),
        (dict(fmt="savedmodel", frames=8), "always dynamic"),
        (dict(fmt="onnx", quantize=True), "--quantize"),
        (dict(fmt="onnx", dynamic=True, frames=8), "contradicts"),
        (dict(fmt="coreml"), "unknown format"),
        (dict(fmt="tflite", frames=0), "positive"),
    ],
)
def test_impossible_requests_fail_with_one_line(kwargs, message, small, tmp_path):
    preset, _ = small
    with pytest.raises(export.ExportError, match=message) as info:
        export.export(preset, tmp_path / "out", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_package_names_the_pip_extra(small, tmp_path, monkeypatch, capsys):
    preset, _ = small
    real_find_spec = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real_find_spec(name, *a))
    assert cli.main(["export", str(preset), str(tmp_path / "m.onnx"), "--format", "onnx"]) == 1
    assert_one_line_error(capsys.readouterr().err, "tf2onnx", "pip install 'video_swin[export]'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "onnx"])
def test_failed_export_leaves_nothing(fmt, small, tmp_path, monkeypatch):
    """A failure while writing (after part of the artefact is on disk) leaves no OUT and no temporary."""
    preset, model = small
    (tmp_path / "out").mkdir()

    class Stub:  # no tracing or conversion: this test is about the write
        input_signature = [tf.TensorSpec((None, 4, 16, 16, 3), tf.float32, name="pixels")]

        def get_concrete_function(self):
            return None

    monkeypatch.setattr(export, "make_function", lambda *args, **kwargs: Stub())
    if fmt == "savedmodel":

        def save_then_fail(obj, path, **kwargs):
            Path(path, "variables").mkdir(parents=True)
            Path(path, "saved_model.pb").write_bytes(b"partial")
            raise RuntimeError("disk full")

        monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    else:
        class Converter:
            def __init__(self, *args, **kwargs):
                self.target_spec = type("Spec", (), {})()

            def convert(self):
                return b"\0" * 1000

        monkeypatch.setattr(tf.lite.TFLiteConverter, "from_concrete_functions", Converter)
        import onnx
        import tf2onnx

        monkeypatch.setattr(tf2onnx.convert, "from_function", lambda *args, **kwargs: (onnx.ModelProto(), None))

        def write_then_fail(path, data):
            Path(path).write_bytes(data[:10])
            raise RuntimeError("disk full")

        monkeypatch.setattr(files, "write_bytes", write_then_fail)
    target = tmp_path / "out" / {"savedmodel": "sm", "tflite": "m.tflite", "onnx": "m.onnx"}[fmt]
    static = dict(frames=4, size=(16, 16)) if fmt != "savedmodel" else {}
    with pytest.raises(RuntimeError, match="disk full"):
        export.export(preset, target, fmt, model=model, **static)
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_output_is_kept_without_overwrite(small, tmp_path):
    preset, _ = small
    out = tmp_path / "m.tflite"
    out.write_bytes(b"keep")
    with pytest.raises(export.ExportError, match="already exists"):
        export.export(preset, out, "tflite", frames=4, size=(16, 16))
    assert out.read_bytes() == b"keep"


def test_export_needs_the_tensorflow_backend(small, tmp_path, monkeypatch):
    preset, _ = small
    monkeypatch.setattr(export, "_backend_name", lambda: "jax")
    with pytest.raises(export.ExportError, match="KERAS_BACKEND=tensorflow"):
        export.export(preset, tmp_path / "sm", "savedmodel")
