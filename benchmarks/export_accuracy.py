#!/usr/bin/env python
"""Accuracy and size of the deployment variants of one preset, against its float32 Keras model.

    .venv/bin/python benchmarks/export_accuracy.py                       # the shipped synthetic_motion demo
    .venv/bin/python benchmarks/export_accuracy.py PRESET --clips 256 --json report.json
    .venv/bin/python benchmarks/export_accuracy.py PRESET --formats tflite --precisions bfloat16

Variants: Keras float32 (the reference), TFLite float32, TFLite dynamic-range int8 (`--quantize`), ONNX
float32 (onnxruntime), Keras `mixed_float16` and `mixed_bfloat16`. For each: file size, top-1 accuracy
(when the clips have labels), top-1 agreement with float32, and the largest logit / probability change.

Clips: for a preset whose classes are the synthetic motion classes, `video_swin.data.synthetic.generate_arrays`
(labelled, seed `--seed`, never the training seed 0 by default); otherwise random uint8 clips (agreement only).
Clip size: the preset protocol's clip_len x crop_size x crop_size unless --frames/--size say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_PRESET = Path(__file__).resolve().parents[1] / "src" / "video_swin" / "zoo" / "builtin" / "synthetic_motion"


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def batched(fn, x, batch):
    return np.concatenate([np.asarray(fn(x[i : i + batch]), dtype=np.float32) for i in range(0, len(x), batch)])


def clips_for(preset, n, seed, frames, size):
    from video_swin.data import synthetic

    names = preset.class_names or []
    if list(names) == list(synthetic.CLASSES):
        x, y = synthetic.generate_arrays(n, seed, frames=frames, size=size)
        return x, y, "synthetic motion clips (labelled)"
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, frames, size, size, 3), dtype=np.uint8), None, "random uint8 clips (no labels)"


def keras_logits(preset, pixels, batch, policy):
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = preset.load_model()
        return batched(lambda b: keras.ops.convert_to_numpy(model(b)).astype("float32"), pixels, batch)
    finally:
        keras.config.set_dtype_policy(previous)


def row(name, logits, reference, labels, size_bytes, seconds):
    out = {
        "variant": name,
        "size_mib": None if size_bytes is None else round(size_bytes / 2**20, 2),
        "top1_agreement": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
        "max_abs_logit_diff": float(np.abs(logits - reference).max()),
        "max_abs_prob_diff": float(np.abs(softmax(logits) - softmax(reference)).max()),
        "seconds": round(seconds, 2),
    }
    if labels is not None:
        out["top1_accuracy"] = float((logits.argmax(-1) == labels).mean())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", nargs="?", default=str(DEFAULT_PRESET))
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--frames", type=int, help="default: the protocol's clip_len")
    parser.add_argument("--size", type=int, help="square crop, default: the protocol's crop_size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--formats", default="tflite,onnx", help="comma list of tflite, onnx (or none)")
    parser.add_argument("--precisions", default="float16,bfloat16", help="comma list of float16, bfloat16 (or none)")
    parser.add_argument("--keep", help="folder to keep the exported files in (default: a temporary folder)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)

    from video_swin.deploy import export
    from video_swin.data import preprocess
    from video_swin.models import presets

    preset = presets.load_preset(args.preset)
    protocol = preset.preprocessing
    frames = args.frames or int(protocol["clip_len"])
    size = args.size or int(protocol["crop_size"])
    x, y, source = clips_for(preset, args.clips, args.seed, frames, size)
    pixels = preprocess.normalize(x, protocol["mean"], protocol["std"])

    t = time.perf_counter()
    reference = keras_logits(preset, pixels, args.batch, "float32")
    rows = [row("keras float32", reference, reference, y, (preset.path / presets.WEIGHTS_FILE).stat().st_size,
                time.perf_counter() - t)]
    model = preset.load_model()
    formats = [f for f in args.formats.split(",") if f and f != "none"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        variants = []
        if "tflite" in formats:
            variants += [("tflite float32", "tflite", False, "model.tflite"),
                         ("tflite int8 (dynamic range)", "tflite", True, "model_int8.tflite")]
        if "onnx" in formats:
            variants.append(("onnx float32", "onnx", False, "model.onnx"))
        for name, fmt, quantize, filename in variants:
            path = export.export(preset, folder / filename, fmt, frames=frames, size=(size, size),
                                 quantize=quantize, model=model, overwrite=True)
            run = export.tflite_predict if fmt == "tflite" else export.onnx_predict
            t = time.perf_counter()
            logits = batched(lambda b: run(path, b), pixels, args.batch)
            rows.append(row(name, logits, reference, y, path.stat().st_size, time.perf_counter() - t))
    for precision in [p for p in args.precisions.split(",") if p and p != "none"]:
        t = time.perf_counter()
        logits = keras_logits(preset, pixels, args.batch, f"mixed_{precision}")
        rows.append(row(f"keras mixed_{precision}", logits, reference, y, None, time.perf_counter() - t))

    report = {"preset": str(preset.path), "clips": int(len(x)), "clip_shape": [frames, size, size],
              "source": source, "rows": rows}
    print(f"{preset.path}: {len(x)} {source}, {frames}x{size}x{size}")
    header = f"{'variant':30} {'MiB':>8} {'top-1':>7} {'agree':>7} {'max|dlogit|':>12} {'max|dprob|':>11} {'s':>7}"
    print(header)
    for r in rows:
        acc = f"{r['top1_accuracy']:.3f}" if "top1_accuracy" in r else "-"
        mib = f"{r['size_mib']:.2f}" if r["size_mib"] is not None else "-"
        print(f"{r['variant']:30} {mib:>8} {acc:>7} {r['top1_agreement']:7.3f} {r['max_abs_logit_diff']:12.2e} "
              f"{r['max_abs_prob_diff']:11.2e} {r['seconds']:7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
