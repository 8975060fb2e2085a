#!/usr/bin/env python
"""What an explanation costs next to a classification, on one view of Swin-T with seeded random weights.

    taskset -c 0,1 .venv/bin/python benchmarks/explain.py                  # the issue's case: 32x224x224
    .venv/bin/python benchmarks/explain.py --frames 8 --size 64 --runs 1   # a quick check that it works

One process. A Swin-T preset is converted from a seeded random official-layout checkpoint (PyTorch-free,
as `make demo` does), and a video of exactly one view (`--frames` frames of `--size` x `--size`) is made;
the preset's protocol is set to one centre view of that size with every frame, so classification and
explanation see the same single view. Then, after one untimed call of each (tracing):

* classify: `VideoClassifier(preset)(frames)`: the model as `video-swin classify` runs it;
* each gradient method (`--methods`, default hirescam at stage1 and grad-x-act at patch_embed):
  `Explainer(preset)(frames, method=...)`: one forward and one backward pass, the map mapped back;
* occlusion: `Explainer(preset)(frames, method="occlusion", batch_size=B)`: 1 + 256 forward passes in
  batches of B (`--occlusion-batch`, default 16; `--occlusion-runs 0` skips it: on 2 cores it takes
  minutes at 32x224x224).

Calls are interleaved (classify, each method, classify, ...) `--runs` times so all see the same load; the
report gives the median wall time of each, the model part of it (`timings["model_s"]`), the ratio of
each gradient method to classify (the issue asks for <= 3 on 2 cores), and occlusion's time per view and
per perturbed clip with its batch size. Run it on a quiet machine with the cores you mean to measure
(`taskset -c 0,1` for 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=3, help="timed calls of each (after one untimed)")
    parser.add_argument("--methods", default="hirescam:stage1,grad-x-act:patch_embed",
                        help="gradient methods as method:layer, comma-separated")
    parser.add_argument("--occlusion-runs", type=int, default=1, help="0 skips occlusion")
    parser.add_argument("--occlusion-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    return parser.parse_args(argv)


def make_preset(tmp, seed):
    from video_swin.checkpoints import checkpoint_io, convert

    checkpoint = Path(tmp) / "swin_tiny_seeded.safetensors"
    checkpoint_io.write_safetensors(checkpoint, convert.random_official_state_dict("tiny", seed=seed))
    return convert.convert_checkpoint(checkpoint, Path(tmp) / "swin_tiny")


def one_view_protocol(protocol, frames, size):
    return replace(protocol, clip_len=frames, frame_interval=1, num_clips=1, num_crops=1, short_side=size, crop_size=size)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None):
    args = parse_args(argv)
    from video_swin import runtime
    from video_swin.inference.classify import VideoClassifier
    from video_swin.inference.explain import Explainer

    runtime.configure()
    methods = [tuple(item.split(":")) for item in args.methods.split(",") if item]
    rng = np.random.default_rng(args.seed)
    frames = rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        preset = make_preset(tmp, args.seed)
        classifier = VideoClassifier(preset)
        explainer = Explainer(preset)
        classifier.protocol = one_view_protocol(classifier.protocol, args.frames, args.size)
        explainer.protocol = one_view_protocol(explainer.protocol, args.frames, args.size)

        calls = {"classify": lambda: classifier(frames)}
        for method, layer in methods:
            calls[f"{method}@{layer}"] = lambda m=method, l=layer: explainer(frames, method=m, layer=l)
        first = {name: timed(call)[0] for name, call in calls.items()}
        wall = {name: [] for name in calls}
        model = {name: [] for name in calls}
        for _ in range(args.runs):
            for name, call in calls.items():
                seconds, result = timed(call)
                wall[name].append(seconds)
                model[name].append(result.timings["model_s"])

        occlusion = None
        if args.occlusion_runs > 0:
            def occlude():
                return explainer(frames, method="occlusion", batch_size=args.occlusion_batch)

            occlusion_first, result = timed(occlude)
            times = [timed(occlude)[0] for _ in range(args.occlusion_runs - 1)] or [occlusion_first]
            clips = result.details["perturbed_clips_per_view"] + 1
            occlusion = {
                "batch_size": args.occlusion_batch,
                "clips_per_view": clips,
                "forward_calls_per_view": result.details["forward_calls_per_view"],
                "cube": result.details["occlusion_cube"],
                "first_call_s": occlusion_first,
                "seconds_per_view": statistics.median(times),
                "seconds_per_clip": statistics.median(times) / clips,
                "timed_runs": len(times),
            }

    base = statistics.median(wall["classify"])
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cores": cores},
        "view": [args.frames, args.size, args.size],
        "runs": args.runs,
        "calls": {
            name: {
                "first_call_s": first[name],
                "median_s": statistics.median(wall[name]),
                "model_median_s": statistics.median(model[name]),
                "ratio_to_classify": statistics.median(wall[name]) / base,
            }
            for name in calls
        },
        "occlusion": occlusion,
    }
    print(f"Swin-T (seeded random weights), one view of {args.frames}x{args.size}x{args.size}, {cores} core(s), "
          f"median of {args.runs} interleaved runs after one untimed call")
    print("| call | median s | model s | x classify | first call s |")
    print("|---|---|---|---|---|")
    for name, row in report["calls"].items():
        print(f"| {name} | {row['median_s']:.3f} | {row['model_median_s']:.3f} | {row['ratio_to_classify']:.2f} | "
              f"{row['first_call_s']:.2f} |")
    if occlusion:
        print(f"occlusion: {occlusion['clips_per_view']} clips per view (cube {'x'.join(map(str, occlusion['cube']))}) "
              f"in {occlusion['forward_calls_per_view']} calls of batch {occlusion['batch_size']}: "
              f"{occlusion['seconds_per_view']:.2f} s per view, {occlusion['seconds_per_clip'] * 1000:.1f} ms per clip "
              f"(first call {occlusion['first_call_s']:.2f} s, {occlusion['timed_runs']} timed)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
