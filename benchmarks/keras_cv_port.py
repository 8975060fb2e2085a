#!/usr/bin/env python
"""The existing Keras port against ours and torchvision, in one run: keras-cv 0.9.0's `VideoSwinBackbone`.

Issue 6 sets its bar by "the best existing Keras port (Keras 3 on TensorFlow)": keras-cv's Video Swin,
which runs on Keras 3 with TensorFlow. This script measures it as `video-swin bench` measures our sides --
each side in its own process, interleaved round-robin, the same seeded torchvision weights and input,
a matmul-ceiling worker in every round -- with these sides:

  torch eager      torchvision `swin3d_*` under `torch.no_grad()` (the reference of the ratios)
  ours default     `from_preset(...).predict_on_batch` (as `video-swin bench`)
  keras-cv graph   the port as `tf.function(model)`
  keras-cv xla     the port as `tf.function(model, jit_compile=True)`

The port gets our converted weights copied layer by layer (its layers carry the official names: norm1,
attn.qkv, attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1/fc2, downsample.reduction/norm),
plus global average pooling and a dense head, so its logits are compared with torchvision's too. Its
input shape is fixed when it is built (its bias tables and masks depend on it), so it is built for the
benchmark's clip.

keras-cv is not a dependency of video_swin. Its wheel imports more than it declares; on this project's
machines it imports with (into a folder of its own, so that the test environment stays as it is):

    pip install --no-deps --target /tmp/kcv keras-cv==0.9.0 dm-tree regex kagglehub tensorflow-datasets \\
        etils toml promise tensorflow-metadata immutabledict
    KERAS_CV_PATH=/tmp/kcv .venv/bin/python benchmarks/keras_cv_port.py --variants tiny,small,base \\
        --frames 16,32 --runs 5 --json benchmarks/results/2026-11-28/keras_cv_port_batch1_2026-11-28.json

A side that cannot run (keras-cv missing, a shape it refuses) is reported as failed; the others still run.
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

from video_swin.checks import bench  # noqa: E402

PORT_MODES = ("graph", "xla")


def _copy_weights_into_port(ours, port):
    """Our backbone's weights into keras-cv's, layer by layer (same official sub-layer names)."""
    port_embedding, our_embedding = port.get_layer("videoswin_patching_and_embedding"), ours.get_layer("patch_embed")
    pairs = [(port_embedding.proj, our_embedding.proj), (port_embedding.norm, our_embedding.norm)]
    pairs.append((port.get_layer("videoswin_top_norm"), ours.get_layer("norm")))
    for i in range(len(ours.depths)):
        port_stage, our_stage = port.get_layer(f"videoswin_basic_layer_{i + 1}"), ours.get_layer(f"layers_{i}")
        for pb, ob in zip(port_stage.blocks, our_stage.blocks, strict=True):
            pairs += [(pb.norm1, ob.norm1), (pb.attn.qkv, ob.attn.qkv), (pb.attn.proj, ob.attn.proj)]
            pairs += [(pb.norm2, ob.norm2), (pb.mlp.fc1, ob.mlp.fc1), (pb.mlp.fc2, ob.mlp.fc2)]
            table = ob.attn.relative_position_bias_table
            if tuple(pb.attn.relative_position_bias_table.shape) != tuple(table.shape):
                raise ValueError(f"keras-cv's bias table {pb.attn.relative_position_bias_table.shape} != {table.shape}")
            pb.attn.relative_position_bias_table.assign(table)
        if our_stage.merging is not None:
            pairs += [(port_stage.downsample.reduction, our_stage.merging.reduction)]
            pairs += [(port_stage.downsample.norm, our_stage.merging.norm)]
    for port_layer, our_layer in pairs:
        port_layer.set_weights(our_layer.get_weights())


def _worker_port(spec):
    import numpy as np
    import tensorflow as tf

    import keras
    from video_swin.models import presets

    try:
        from keras_cv.src.models.backbones.video_swin.video_swin_backbone import VideoSwinBackbone
    except ImportError as exc:
        bench._send({"error": f"keras-cv is not importable ({exc}); see benchmarks/keras_cv_port.py"})
        return
    ours = presets.from_preset(spec["preset"])
    x = np.load(spec["input"])
    b = ours.backbone
    try:
        port = VideoSwinBackbone(
            input_shape=x.shape[1:],
            embed_dim=b.embed_dim,
            depths=list(b.depths),
            num_heads=list(b.num_heads),
            window_size=list(b.window_size),
            patch_size=list(b.patch_size),
            drop_path_rate=0.0,
        )
        inputs = keras.Input(x.shape[1:])
        head = keras.layers.Dense(ours.num_classes)
        model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling3D()(port(inputs))))
        _copy_weights_into_port(b, port)
        head.set_weights(ours.get_layer("head").get_weights())
    except Exception as exc:  # noqa: BLE001  (the port's own failures are reported as its row)
        bench._send({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
        return
    del ours
    fn = tf.function(lambda v: model(v, training=False), jit_compile=spec["mode"] == "xla")
    xt = tf.constant(x)
    out = {}

    def step():
        out["y"] = fn(xt).numpy()

    info = {"tensorflow": tf.__version__, "keras": keras.__version__, "load_rss_mb": bench._rss_mb()}
    wall, cpu = bench._timed(step)
    np.save(spec["output"], out["y"])
    info.update(first_wall=wall, first_cpu=cpu)
    bench._serve(step, info)


class PortWorker(bench.Worker):
    """A keras-cv side: this script as the worker process, keras-cv's folder on its path."""

    def command(self):
        return [sys.executable, __file__, "--worker", json.dumps(self.spec)]

    def environment(self):
        env = super().environment()
        extra = os.environ.get("KERAS_CV_PATH")
        if extra:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
        return env


def run(args, say=print):
    out_dir = Path(tempfile.mkdtemp(prefix="keras-cv-port-"))
    log = open(out_dir / "workers.log", "a")
    results = {"machine": bench.machine_description(), "args": vars(args), "cells": []}
    results["keras_cv_path"] = os.environ.get("KERAS_CV_PATH")
    say(f"machine: {results['machine']}\nworker logs: {log.name}")
    t_start = time.perf_counter()
    for variant in args.variants:
        shapes = [(args.batch, t, args.size, args.size, 3) for t in args.frames]
        checkpoint, preset, inputs = bench.prepare(out_dir, variant, args.seed, shapes, log, args.first_timeout)
        for shape in shapes:
            batch, frames = shape[0], shape[1]
            label = f"{variant} inference, batch {batch}, {frames}x{args.size}x{args.size}"
            say(f"[{label}]")
            common = {"variant": variant, "checkpoint": str(checkpoint), "preset": str(preset)}
            common.update(input=str(inputs[shape]), train=False)

            def side(worker_class, kind, mode, name):
                output = str(out_dir / f"y_{name.replace(' ', '_')}_{variant}_{batch}x{frames}.npy")
                return worker_class(name, {"kind": kind, "mode": mode, "output": output, **common}, log)

            workers = [bench.Worker("matmul ceiling", {"kind": "ceiling"}, log)]
            workers.append(side(bench.Worker, "torch", "eager", "torch eager"))
            workers.append(side(bench.Worker, "ours", "default", "ours default"))
            workers += [side(PortWorker, "port", mode, f"keras-cv {mode}") for mode in args.port]
            bench._run_group(workers, args.runs, args.warmup, args.first_timeout, say)
            flops = 2 * bench.multiply_adds(variant, frames, args.size, args.size, batch)
            rows, ceiling = bench.summarise_rows(workers, workers[0], flops, {"torch eager": workers[1]}, batch)
            ours = workers[2]
            for port, row in zip(workers[3:], rows[3:]):  # the port's rows: ours / the port too
                if port.walls and len(port.walls) == len(ours.walls):
                    row["ours_default_over_this"] = bench._median([a / b for a, b in zip(ours.walls, port.walls)])
            cell = {"variant": variant, "batch": batch, "frames": frames, "size": args.size, "rows": rows}
            cell.update(gflop_per_call=flops / 1e9, ceiling_gflops=ceiling)
            cell["max_abs_logit_diff"] = bench._logit_differences(out_dir, variant, batch, frames)
            results["cells"].append(cell)
            say("")
            say(f"{label}: {cell['gflop_per_call']:.1f} GFLOP per call")
            say(bench.markdown_table(cell))
            for row in rows[3:]:
                if "ours_default_over_this" in row:
                    say(f"ours default / {row['side']}: {row['ours_default_over_this']:.3f} (median of per-round ratios)")
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in cell["max_abs_logit_diff"].items())
            say(f"largest |logit difference| against torch eager: {diffs}")
            bench.save_results(args.json, results)
    results["total_wall_s"] = time.perf_counter() - t_start
    bench.save_results(args.json, results)
    log.close()
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        spec = json.loads(argv[1])
        (_worker_port if spec["kind"] == "port" else bench.WORKERS[spec["kind"]])(spec)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", type=bench._csv(tuple(bench.VARIANTS)), default=["tiny"])
    p.add_argument("--frames", type=lambda s: [int(v) for v in s.split(",")], default=[16])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--port", type=bench._csv(PORT_MODES), default=list(PORT_MODES), help="keras-cv sides")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-timeout", type=float, default=1800)
    p.add_argument("--json")
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
