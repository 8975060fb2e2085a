"""Deployment artefacts: TF SavedModel (TF Serving), TFLite / LiteRT, ONNX.

    video-swin export PRESET OUT --format savedmodel|tflite|onnx [--frames T --size H W | --dynamic]
                                 [--quantize] [--input float|uint8] [--overwrite]

* ``savedmodel``: a folder. Signature ``serving_default`` takes uint8 frames ``(B, T, H, W, 3)`` and
  normalises them in the graph with the preset's mean/std (0-255 scale, ``(x - mean) / std``); signature
  ``normalized`` (alias ``serve``, Keras' default endpoint name) takes float32 normalised pixels. Batch, T,
  H and W are all dynamic: one artefact serves
  8x112x112 and 32x224x224 (the window shrink, shift and mask are computed in the graph from the runtime
  shape). Both return ``{"logits": (B, classes)}`` (``{"features": ...}`` for a backbone preset). The
  preset's config (class names, protocol) is stored as ``assets/video_swin.json``. Loads with
  ``tf.saved_model.load`` or ``keras.layers.TFSMLayer`` without this package.
* ``tflite``: one ``.tflite`` file with TFLite builtin ops only (no Flex / SELECT_TF_OPS), for LiteRT
  (``ai-edge-litert``) and its XNNPACK CPU delegate. T, H, W are fixed at export (``--frames``,
  ``--size``; default: the preset protocol's ``clip_len`` and ``crop_size``); the batch stays dynamic
  (``resize_tensor_input``). ``--quantize``: dynamic-range int8 weights (activations stay float).
* ``onnx``: one ``.onnx`` file (tf2onnx, opset 17) for onnxruntime. Batch, T, H and W are dynamic unless
  ``--frames`` / ``--size`` fix them (a static export converts ~3x faster and gives a smaller graph). The
  preset's config is in the model's metadata_props (key ``video_swin``).

TFLite and ONNX take float32 normalised pixels (``--input float``, the default, like the Keras model) or
uint8 frames normalised in the graph (``--input uint8``).

Every export writes atomically: a temporary file or folder beside OUT, renamed into place only when
complete, so a failure leaves nothing behind. Exports need the TensorFlow backend.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from video_swin import files

FORMATS = ("savedmodel", "tflite", "onnx")
INPUTS = ("uint8", "float")
ONNX_OPSET = 17
METADATA_ASSET = "video_swin.json"

# format -> [(import name, pip name)] needed beyond TensorFlow.
REQUIREMENTS = {
    "savedmodel": [],
    "tflite": [],  # the converter is part of TensorFlow; ai-edge-litert is only needed to run the file
    "onnx": [("tf2onnx", "tf2onnx"), ("onnx", "onnx")],
}
EXTRA_HINT = "pip install 'video_swin[export]'"


class ExportError(ValueError):
    """An export that cannot be done, explained in one line."""


def require(module: str, pip_name: str | None = None, purpose: str = "this export"):
    """Imports `module` or raises ExportError naming the pip extra that provides it."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise ExportError(
            f"{purpose} needs the Python package {pip_name or module}, which is not installed: {EXTRA_HINT}"
        )
    return importlib.import_module(module)


def _backend_name():
    import keras

    return keras.backend.backend()


def _check_backend():
    if _backend_name() != "tensorflow":
        raise ExportError(
            f"export traces the model into a TensorFlow graph, which needs the TensorFlow backend "
            f"(KERAS_BACKEND={_backend_name()}): run it with KERAS_BACKEND=tensorflow"
        )


def _static_shape(frames, size, fmt):
    """(T, H, W) ints, or None where dynamic. TFLite needs all three."""
    if size is not None:
        size = tuple(int(v) for v in size)
        if len(size) == 1:
            size = size * 2
        if len(size) != 2:
            raise ExportError(f"--size takes H W (or one value for square frames), got {size}")
    t = int(frames) if frames is not None else None
    h, w = size if size is not None else (None, None)
    for name, v in (("--frames", t), ("--size H", h), ("--size W", w)):
        if v is not None and v <= 0:
            raise ExportError(f"{name} must be positive, got {v}")
    if fmt == "savedmodel" and (t is not None or h is not None):
        raise ExportError("a SavedModel is always dynamic in batch, T, H and W: drop --frames/--size")
    return t, h, w


def _normalizer(preprocessing):
    mean = np.asarray(preprocessing["mean"], "float32").reshape(1, 1, 1, 1, 3)
    std = np.asarray(preprocessing["std"], "float32").reshape(1, 1, 1, 1, 3)

    def normalize(x):
        import tensorflow as tf

        return (tf.cast(x, tf.float32) - tf.constant(mean)) / tf.constant(std)

    return normalize


def _output_name(model) -> str:
    from video_swin.models import VideoSwinClassifier

    return "logits" if isinstance(model, VideoSwinClassifier) else "features"


def make_function(model, preprocessing, input_kind="float", shape=(None, None, None), batch=None):
    """A tf.function (B, T, H, W, 3) -> {"logits" | "features": ...} with a fixed input signature."""
    import tensorflow as tf

    if input_kind not in INPUTS:
        raise ExportError(f"input must be one of {', '.join(INPUTS)}, got {input_kind!r}")
    normalize = _normalizer(preprocessing)
    key = _output_name(model)
    dtype = tf.uint8 if input_kind == "uint8" else tf.float32
    spec = tf.TensorSpec((batch, *shape, 3), dtype, name="frames" if input_kind == "uint8" else "pixels")

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x):
        pixels = normalize(x) if input_kind == "uint8" else x
        return {key: model(pixels, training=False)}

    return serve


# ----------------------------------------------------------------------------------------------------
# Atomic writes


# ----------------------------------------------------------------------------------------------------
# Formats


def export_savedmodel(model, out, preprocessing, config=None, overwrite=False) -> Path:
    """A SavedModel folder with `serving_default` (uint8 frames) and `normalized` (float32 pixels)
    signatures, dynamic in batch, T, H and W."""
    import tensorflow as tf

    serve_uint8 = make_function(model, preprocessing, "uint8")
    serve_float = make_function(model, preprocessing, "float")
    # A bare tf.Module holding the variables, with signatures only: keras.export.ExportArchive writes the
    # same signatures but also serialises the functions as attributes, which takes ~7x longer for this
    # graph. Both `tf.saved_model.load(...).signatures[...]` and `keras.layers.TFSMLayer(path,
    # call_endpoint=...)` load it.
    module = tf.Module()
    module.model_variables = [getattr(v, "value", v) for v in model.weights]
    float_signature = serve_float.get_concrete_function()
    signatures = {
        "serving_default": serve_uint8.get_concrete_function(),
        "normalized": float_signature,
        "serve": float_signature,  # Keras' name for the model's own input: TFSMLayer(path) with no endpoint
    }
    with files.atomic_path(out, overwrite) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        inputs = {"serving_default": _input_description("uint8", (None,) * 3),
                  "normalized": _input_description("float", (None,) * 3), "serve": "same as normalized"}
        (assets / METADATA_ASSET).write_text(json.dumps(_metadata(config, preprocessing, inputs), indent=2) + "\n")
    return Path(out)


def export_tflite(model, out, preprocessing, shape, quantize=False, input_kind="float", overwrite=False) -> Path:
    """A .tflite file with builtin ops only, fixed (T, H, W) and a dynamic batch."""
    import tensorflow as tf

    if any(v is None for v in shape):
        raise ExportError(
            "TFLite keeps only the batch dimension dynamic: give a static clip with --frames T --size H W "
            "(the default is the preset's clip_len and crop_size)"
        )
    fn = make_function(model, preprocessing, input_kind, shape)
    concrete = fn.get_concrete_function()
    # No trackable object: the converter then freezes the variables into constants (the SavedModel
    # path keeps them as resource variables, which dynamic-range quantisation skips) and is faster.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights, float activations
    try:
        flatbuffer = converter.convert()
    except Exception as exc:
        raise ExportError(f"TFLite conversion with builtin ops failed: {_one_line(exc)[:500]}") from None
    with files.atomic_path(out, overwrite) as tmp:
        files.write_bytes(tmp, flatbuffer)
    return Path(out)


def export_onnx(model, out, preprocessing, shape=(None, None, None), input_kind="float", config=None,
                overwrite=False) -> Path:
    """An .onnx file (opset 17) with a dynamic batch (and dynamic T, H, W unless fixed)."""
    for module, pip_name in REQUIREMENTS["onnx"]:
        require(module, pip_name, "ONNX export")
    import tf2onnx

    fn = make_function(model, preprocessing, input_kind, shape)
    try:
        try:
            # tf2onnx deep-copies the whole graph, weights included, before each of its ~36 optimiser
            # passes so that a failing pass can be skipped: over half the conversion time (minutes for
            # Swin-T). tf2onnx 1.17 turns that off whenever TF2ONNX_CATCH_ERRORS is set (to any value).
            with _environ(TF2ONNX_CATCH_ERRORS="FALSE"):
                proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=ONNX_OPSET)
        except Exception:  # an optimiser pass failed: convert again, letting tf2onnx skip failing passes
            with _environ(TF2ONNX_CATCH_ERRORS=None):
                proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=ONNX_OPSET)
    except Exception as exc:
        raise ExportError(f"ONNX conversion failed: {_one_line(exc)[:500]}") from None
    _drop_unused_inputs(proto, keep=[spec.name for spec in fn.input_signature])
    entry = proto.metadata_props.add()
    entry.key = "video_swin"
    entry.value = json.dumps(_metadata(config, preprocessing, {fn.input_signature[0].name: _input_description(input_kind, shape)}))
    with files.atomic_path(out, overwrite) as tmp:
        files.write_bytes(tmp, proto.SerializeToString())
    return Path(out)


# ----------------------------------------------------------------------------------------------------
# Running the artefacts (for checks and benchmarks; each needs only its runtime, not this package's model)


def tflite_predict(path, x, num_threads=None, use_xnnpack=True):
    """Runs a .tflite file in LiteRT (ai-edge-litert) on a batch `x`; resizes the dynamic batch."""
    interpreter_mod = require("ai_edge_litert.interpreter", "ai-edge-litert", "running a TFLite file")
    resolver = interpreter_mod.OpResolverType
    interpreter = interpreter_mod.Interpreter(
        model_path=str(path),
        num_threads=num_threads,
        experimental_op_resolver_type=resolver.AUTO if use_xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    inp = interpreter.get_input_details()[0]
    x = np.asarray(x, dtype=inp["dtype"])
    if tuple(inp["shape"]) != x.shape:
        interpreter.resize_tensor_input(inp["index"], x.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def onnx_predict(path, x, num_threads=None):
    """Runs an .onnx file in onnxruntime (CPU) on a batch `x`."""
    ort = require("onnxruntime", "onnxruntime", "running an ONNX file")
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    return session.run(None, {inp.name: np.asarray(x, dtype)})[0]


@contextlib.contextmanager
def _environ(**values):
    """Sets (or, for None, removes) environment variables for the duration of the block."""
    def apply(settings):
        for key, value in settings.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    saved = {key: os.environ.get(key) for key in values}
    try:
        apply(values)
        yield
    finally:
        apply(saved)


def _drop_unused_inputs(proto, keep):
    """tf2onnx can leave graph inputs that no node reads (placeholders of constants it folded, seen with
    static T/H/W); onnxruntime would demand a value for each. They are removed."""
    graph = proto.graph
    used = {name for node in graph.node for name in node.input}
    used.update(output.name for output in graph.output)
    stale = [i for i in graph.input if i.name not in used and i.name not in keep]
    for value_info in stale:
        graph.input.remove(value_info)


def _metadata(config, preprocessing, inputs):
    config = config or {}
    return {
        "name": config.get("name"),
        "variant": config.get("variant"),
        "num_classes": config.get("num_classes"),
        "class_names": config.get("class_names"),
        "preprocessing": preprocessing,
        "inputs": inputs,
    }


def _input_description(input_kind, shape):
    dims = ", ".join(["B"] + [str(v) if v is not None else name for v, name in zip(shape, "THW")] + ["3"])
    if input_kind == "uint8":
        return f"uint8 RGB frames ({dims}), 0-255, normalised in the graph with the preset's mean/std"
    return f"float32 normalised pixels ({dims}): (x - mean) / std on the 0-255 scale"


def export(preset, out, fmt="savedmodel", frames=None, size=None, dynamic=False, quantize=False,
           input_kind="float", overwrite=False, model=None) -> Path:
    """Exports a preset folder to `out` (a folder for savedmodel, a file otherwise) in format `fmt`.

    `model` (optional) is an already loaded model of that preset. Returns the path written. Raises
    ExportError with one line for an impossible request, before anything is loaded.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if input_kind not in INPUTS:
        raise ExportError(f"--input must be one of {', '.join(INPUTS)}, got {input_kind!r}")
    if quantize and fmt != "tflite":
        raise ExportError("--quantize (dynamic-range int8) is for --format tflite")
    if fmt == "savedmodel" and input_kind != "float":
        raise ExportError("a SavedModel always has both inputs (serving_default: uint8, normalized: float32): drop --input")
    t, h, w = _static_shape(frames, size, fmt)
    if dynamic and fmt == "tflite":
        raise ExportError(
            "TFLite cannot keep T, H, W dynamic (only the batch dimension): export a static clip with "
            "--frames T --size H W, or use --format savedmodel or onnx for dynamic clips"
        )
    if dynamic and (t is not None or h is not None):
        raise ExportError("--dynamic contradicts --frames/--size")
    if Path(out).exists() and not overwrite:
        raise ExportError(f"{out} already exists (pass --overwrite to replace it)")
    files.check_output_path(out, overwrite)
    for module, pip_name in REQUIREMENTS[fmt]:  # before loading anything: fail fast and cheaply
        require(module, pip_name, f"{fmt} export")
    _check_backend()
    from video_swin.zoo import resolve as zoo_resolve

    loaded = zoo_resolve.load_preset(preset)  # a Preset, a folder or a registered name
    config, preprocessing = loaded.config, loaded.preprocessing
    if model is None:
        model = loaded.load_model()
    if fmt == "savedmodel":
        return export_savedmodel(model, out, preprocessing, config, overwrite=overwrite)
    if fmt == "tflite":
        crop = preprocessing.get("crop_size")
        t = t if t is not None else preprocessing.get("clip_len")
        h = h if h is not None else crop
        w = w if w is not None else crop
        if None in (t, h, w):
            raise ExportError("TFLite needs a static clip: give --frames T --size H W (the preset has no protocol)")
        return export_tflite(model, out, preprocessing, (int(t), int(h), int(w)), quantize, input_kind, overwrite)
    return export_onnx(model, out, preprocessing, (t, h, w), input_kind, config, overwrite)


def describe(path) -> str:
    """One line about an exported artefact: format, size, input."""
    path = Path(path)
    if path.is_dir():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        kind = "SavedModel, signatures serving_default (uint8 frames) and normalized (float32), dynamic B, T, H, W"
    else:
        size = path.stat().st_size
        with open(path, "rb") as f:
            is_tflite = f.read(8)[4:8] == b"TFL3"  # the TFLite flatbuffer identifier
        kind = "TFLite, builtin ops, dynamic batch" if is_tflite else "ONNX"
    return f"{kind}, {size / 2**20:.1f} MiB"


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
