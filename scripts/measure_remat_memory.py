"""Peak memory of one training step with and without activation recomputation (`--remat`).

Each measurement runs in a fresh process with TensorFlow's BFC allocator on the CPU
(TF_CPU_ALLOCATOR_USE_BFC=true), which makes `tf.config.experimental.get_memory_info('CPU:0')` report the
allocator's peak; the stats are reset after a warm-up step, so the peak is that of one step (weights,
optimizer state, activations kept for the backward pass, gradients). The process's max RSS is printed too.

    python scripts/measure_remat_memory.py                       # synthetic-small, 16 x 16x64x64 clips
    python scripts/measure_remat_memory.py --arch tiny --batch 2 --frames 16 --size 112
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def child(args):
    import numpy as np
    import tensorflow as tf

    from video_swin.training import optim
    from video_swin.training.model import build_classifier
    from video_swin.training.train import make_train_step

    model = build_classifier(8, arch=args.arch, head_dropout=0.0, remat=args.remat)
    opt = optim.make_optimizer(model, 1e-4)
    opt.build(model.trainable_variables)
    step = make_train_step(model, opt, tf.distribute.get_strategy(), 8, args.batch)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((args.batch, args.frames, args.size, args.size, 3)).astype("float32"))
    y = tf.constant(np.arange(args.batch) % 8)
    step(x, y)  # trace + warm-up
    base = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    t0 = time.perf_counter()
    step(x, y)
    seconds = time.perf_counter() - t0
    info = tf.config.experimental.get_memory_info("CPU:0")
    print(json.dumps({
        "remat": args.remat, "peak_bytes": info["peak"], "resident_before_step_bytes": base,
        "step_peak_above_resident_bytes": info["peak"] - base, "step_seconds": round(seconds, 2),
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="synthetic-small")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--remat", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = {}
    for remat in (False, True):
        cmd = [sys.executable, __file__, "--child", "--arch", args.arch, "--batch", str(args.batch),
               "--frames", str(args.frames), "--size", str(args.size)] + (["--remat"] if remat else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        results[remat] = json.loads(out.strip().splitlines()[-1])
    mib = 2**20
    print(f"{args.arch}, batch {args.batch} x {args.frames}x{args.size}x{args.size}, float32, one training step:")
    for remat in (False, True):
        r = results[remat]
        print(f"  recomputation {'on ' if remat else 'off'}: allocator peak {r['peak_bytes'] / mib:8.1f} MiB "
              f"(step's own {r['step_peak_above_resident_bytes'] / mib:8.1f} MiB above the resident "
              f"{r['resident_before_step_bytes'] / mib:.1f} MiB), process max RSS {r['max_rss_bytes'] / mib:.0f} MiB, "
              f"step {r['step_seconds']} s")
    off, on = results[False]["peak_bytes"], results[True]["peak_bytes"]
    print(f"  peak reduced by {100 * (1 - on / off):.1f}%")
    print(json.dumps({"arch": args.arch, "batch": args.batch, "frames": args.frames, "size": args.size,
                      "off": results[False], "on": results[True]}))


if __name__ == "__main__":
    main()
