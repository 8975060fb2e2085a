"""Where the GPU time of our fastest configuration goes: a JAX profiler trace of the compiled forward pass,
its device kernels summed by kind (matrix multiplies, fused attention, XLA fusions, copies).

    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu_profile.py \\
        --variant base --batch 128 --out profile.json

Writes the per-kind table (and the 25 longest kernels) as JSON; the raw Perfetto trace stays in --trace-dir.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu  # noqa: E402  (sets the backend and imports torch before JAX)


def kind_of(name: str) -> str:
    n = name.lower()
    if "flash" in n or "fmha" in n or "cudnn" in n and "attn" in n:
        return "fused attention (cuDNN)"
    if "gemm" in n or "cutlass" in n or "sm90_xmma" in n or "nvjet" in n or "matmul" in n:
        return "matrix multiply"
    if "transpose" in n or "copy" in n or "memcpy" in n or "memset" in n:
        return "copies / transposes"
    if "reduce" in n or "fusion" in n or "loop_" in n or "input_" in n:
        return "XLA fusions (elementwise, norms, softmax, reductions)"
    return "other"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="base")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--trace-dir", default="/tmp/video_swin_trace")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import jax
    import numpy as np

    tm = gpu.torch_model(args.variant)
    ours = gpu.our_model(args.variant, tm.state_dict(), "bfloat16")
    del tm
    x = jax.device_put(np.random.default_rng(0).standard_normal((args.batch, args.frames, 224, 224, 3)).astype("float32"))
    forward = gpu.with_fused_attention(gpu.jitted_forward(ours), True)
    for _ in range(3):
        forward(x).block_until_ready()
    t = time.perf_counter()
    for _ in range(args.calls):
        y = forward(x)
    y.block_until_ready()
    wall = (time.perf_counter() - t) / args.calls
    with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
        for _ in range(args.calls):
            y = forward(x)
        y.block_until_ready()
    trace = sorted(Path(args.trace_dir).rglob("perfetto_trace.json.gz"), key=lambda f: f.stat().st_mtime)[-1]
    events = json.loads(gzip.open(trace).read())
    events = events["traceEvents"] if isinstance(events, dict) else events
    # device kernels: complete events on the GPU's stream tracks ("pid" of a /device:GPU process)
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    gpu_pids = {pid for pid, name in names.items() if "GPU" in name or "gpu" in name}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name" and e.get("pid") in gpu_pids}
    # A GPU process also has op- and module-level tracks over the same time: count the streams' kernels only.
    streams = {key for key, name in threads.items() if "stream" in name.lower()} or set(threads)
    by_kind, by_name = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in streams and "dur" in e:
            by_kind[kind_of(e["name"])] += e["dur"] / 1e6 / args.calls
            by_name[e["name"]] += e["dur"] / 1e6 / args.calls
    flop = 2 * gpu.multiply_adds(args.variant, args.frames, 224, 224, batch=args.batch)
    kernels = sum(by_kind.values())
    result = {
        "variant": args.variant, "frames": args.frames, "batch": args.batch, "wall_s_per_call": wall,
        "clips_per_s": args.batch / wall, "tflops": flop / wall / 1e12, "share_of_989": flop / wall / 1e12 / 989,
        "kernel_s_per_call": kernels, "gpu_processes": sorted(names[p] for p in gpu_pids),
        "tracks": sorted({threads[k] for k in threads}), "tracks_counted": sorted({threads[k] for k in streams}),
        "by_kind_s": dict(by_kind.most_common()), "by_kind_share": {k: v / kernels for k, v in by_kind.most_common()} if kernels else {},
        "top_kernels_s": by_name.most_common(25),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "top_kernels_s"}, indent=1))
    for name, s in by_name.most_common(12):
        print(f"{s * 1e3:8.2f} ms  {kind_of(name):45s} {name[:110]}")


if __name__ == "__main__":
    main()
