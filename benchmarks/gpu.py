"""GPU throughput: our Keras model (JAX backend, XLA) against torchvision `swin3d_*` (eager and
`torch.compile`) at the same precision, batch 8, interleaved, in one process.

    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu.py --out results.jsonl

TensorFlow is not on the GPU machines this project is lent (their image carries PyTorch and JAX), so
"ours" is the same Keras model code on Keras' JAX backend: `model.predict_on_batch`-equivalent forward,
compiled once by XLA (`jax.jit` of the stateless call); in half precision also with the fused
attention kernel (`attention.fused`: `ops.dot_product_attention`, cuDNN flash attention
when JAX can use it), side `ours_xla_fused`, with its logit difference from the plain path. Precisions: float32, and bfloat16 / float16 as
mixed precision (Keras policy `mixed_*`: float32 variables, bias/mask/softmax in float32) against
`torch.autocast` with the same dtype. Both sides get the same weights (torchvision's, converted with our
name map) and the same input; the float32 parity of the logits on the GPU is reported too.

`--batch 8,32,128` sweeps batch sizes. Every row carries the achieved TFLOP/s (2 x the exact multiply-add
count of `video_swin.checks.bench.multiply_adds`) and its share of `--peak-tflops` (default 989: the
H100/H200 SXM dense bfloat16/float16 rate from NVIDIA's datasheet; float32 rows against 67, its FP32
rate without TF32, which is off here).

Each measurement: warm-up calls (the first one is timed separately: trace + compile), then `--runs`
rounds; in each round every side runs `--iters` forward passes back to back, synchronised, sides
alternating. Median and min-max per call; clips/s = batch / median. Results go to `--out` as JSON lines
as they are measured, so a run cut short by its time budget keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402  (before keras/jax: the reference side owns its CUDA context first)
import torchvision  # noqa: E402,F401
from torchvision.models import video  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from video_swin.checkpoints import weights  # noqa: E402
from video_swin.checks.bench import multiply_adds  # noqa: E402
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier, variant_config  # noqa: E402

TORCHVISION = {"tiny": "swin3d_t", "small": "swin3d_s", "base": "swin3d_b"}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FP32_PEAK_TFLOPS = 67.0  # H100/H200 SXM, FP32 without tensor cores (TF32 is off in this script)


def torch_model(variant, seed=0):
    torch.manual_seed(seed)
    return getattr(video, TORCHVISION[variant])().to(DEVICE).eval()


def our_model(variant, state_dict, precision):
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else f"mixed_{precision}")
    backbone = VideoSwinBackbone(**variant_config(variant))
    model = VideoSwinClassifier(backbone, num_classes=400)
    tensors = {weights.torchvision_to_official(k): v.detach().cpu().float().numpy() for k, v in state_dict.items()}
    weights.load_official_weights(model, tensors)
    keras.mixed_precision.set_global_policy("float32")
    return model


def jitted_forward(model):
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable, non_trainable, x):
        y, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return y

    call = lambda x: forward(trainable, non_trainable, x)  # noqa: E731
    call.lower = lambda x: forward.lower(trainable, non_trainable, x)
    return call


def xla_costs(raw_forward, x, fused):
    """XLA's own count of the compiled forward pass: FLOPs and bytes accessed (its cost analysis), for a
    roofline: the time at the peak rate against the time at the memory bandwidth."""
    from video_swin.models import attention

    with attention.configured(fused_attention=fused):
        costs = raw_forward.lower(x).compile().cost_analysis()
    if isinstance(costs, (list, tuple)):
        costs = costs[0]
    return {"xla_flops": float(costs.get("flops", float("nan"))),
            "xla_bytes_accessed": float(costs.get("bytes accessed", float("nan")))}


def with_fused_attention(forward, allowed):
    """`forward` traced (on its first call, and any retrace) with `attention.settings.fused_attention` set."""
    from video_swin.models import attention

    def call(x):
        with attention.configured(fused_attention=allowed):
            return forward(x)

    return call


def time_calls(fn, sync, iters):
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        out = fn()
    sync(out)
    return (time.perf_counter() - t) / iters


def bench(variant, frames, size, batch, precision, runs, iters, with_compile, emit, peak_tflops=989.0, roofline=False):
    tm = torch_model(variant)
    x = np.random.default_rng(0).standard_normal((batch, frames, size, size, 3)).astype("float32")
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))).to(DEVICE)
    ours = our_model(variant, tm.state_dict(), precision)
    xj = jax.device_put(x)
    raw, raw_fused = jitted_forward(ours), jitted_forward(ours)
    forward = with_fused_attention(raw, False)
    forward_fused = with_fused_attention(raw_fused, True)
    dtype = DTYPES[precision]

    def torch_call(m):
        def call():
            with torch.no_grad(), torch.autocast(DEVICE, dtype=dtype, enabled=precision != "float32"):
                return m(xt)
        return call

    def torch_sync(out=None):
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    def jax_sync(out=None):
        if out is not None:
            out.block_until_ready()

    sides = {"ours_xla": (lambda: forward(xj), jax_sync), "torch_eager": (torch_call(tm), torch_sync)}
    if precision != "float32":  # the fused path is for half precision only
        sides["ours_xla_fused"] = (lambda: forward_fused(xj), jax_sync)
    if with_compile:
        sides["torch_compile"] = (torch_call(torch.compile(tm)), torch_sync)
    first = {}
    for name, (fn, sync) in sides.items():
        t = time.perf_counter()
        fn_out = fn()
        sync(fn_out)
        first[name] = time.perf_counter() - t
        for _ in range(3):
            sync(fn())
    if precision == "float32":
        a = np.asarray(forward(xj), dtype=np.float64)
        with torch.no_grad():
            b = tm(xt).double().cpu().numpy()
        parity = float(np.abs(a - b).max())
        fused_vs_plain = None
    else:
        parity = None
        plain, fused = (np.asarray(f(xj), dtype=np.float64) for f in (forward, forward_fused))
        fused_vs_plain = {"max_abs_logit_diff": float(np.abs(fused - plain).max()),
                          "top1_agreement": float((fused.argmax(1) == plain.argmax(1)).mean()),
                          "logit_scale": float(np.abs(plain).max())}
    times = {name: [] for name in sides}
    names = list(sides)
    for r in range(runs):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, sync = sides[name]
            times[name].append(time_calls(fn, sync, iters))
    costs = {}
    if roofline:
        for name, (r, fused) in {"ours_xla": (raw, False), "ours_xla_fused": (raw_fused, True)}.items():
            if name in sides:
                try:
                    costs[name] = xla_costs(r, xj, fused)
                except Exception as exc:  # a cost analysis the backend does not give
                    costs[name] = {"xla_cost_error": f"{type(exc).__name__}: {exc}"[:200]}
    eager = statistics.median(times["torch_eager"])
    flop = 2 * multiply_adds(variant, frames, size, size, batch=batch)
    peak = FP32_PEAK_TFLOPS if precision == "float32" else peak_tflops
    for name, values in times.items():
        median = statistics.median(values)
        emit({
            "tflop_per_call": flop / 1e12, "tflops": flop / median / 1e12, "share_of_peak": flop / median / 1e12 / peak,
            "peak_tflops": peak, **costs.get(name, {}),
            "variant": variant, "frames": frames, "size": size, "batch": batch, "precision": precision, "side": name,
            "median_s": median, "min_s": min(values), "max_s": max(values), "clips_per_s": batch / median,
            "first_call_s": first[name], "ratio_to_torch_eager": median / eager,
            "throughput_vs_torch_eager": eager / median,
            "fp32_max_abs_logit_diff_vs_torch": parity if name == "ours_xla" else None,
            "fused_vs_plain": fused_vs_plain if name == "ours_xla_fused" else None,
        })
    del ours, forward, tm
    keras.backend.clear_session()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=420.0, help="seconds; cases not started by then are skipped")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--batch", default="8", help="batch size, or several: 8,32,128")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense half-precision peak (default: H100/H200 SXM)")
    p.add_argument("--cases", help="instead of the default list: variant:frames:precision[:compile],... "
                   "e.g. small:16:bfloat16,base:16:bfloat16:compile")
    p.add_argument("--roofline", action="store_true", help="also XLA's FLOP and byte counts of our compiled forward")
    p.add_argument("--smoke", action="store_true", help="a seconds-long check of the script on any machine")
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    jax.config.update("jax_default_matmul_precision", "highest")
    start = time.time()
    out = open(args.out, "a")

    def emit(row):
        row["device"] = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
        row["torch"], row["jax"], row["keras"] = torch.__version__, jax.__version__, keras.__version__
        print(json.dumps(row), flush=True)
        out.write(json.dumps(row) + "\n")
        out.flush()

    # In order of importance: the target (batch 8, reduced precision) first.
    cases = [
        ("tiny", 16, "bfloat16", True), ("tiny", 16, "float16", True), ("tiny", 16, "float32", True),
        ("tiny", 32, "bfloat16", True), ("small", 16, "bfloat16", True), ("base", 16, "bfloat16", True),
        ("base", 32, "bfloat16", False), ("small", 32, "bfloat16", False), ("tiny", 32, "float16", False),
        ("base", 16, "float16", False),
    ]
    size = 224
    if args.cases:
        fields = (c.split(":") for c in args.cases.split(","))
        cases = [(v, int(f), prec, rest == ["compile"]) for v, f, prec, *rest in fields]
    if args.smoke:
        cases, size, args.runs, args.iters = [("tiny", 4, "float32", False), ("tiny", 4, "bfloat16", False)], 32, 2, 1
    batches = [int(b) for b in str(args.batch).split(",")]
    for variant, frames, precision, with_compile in cases:
        for batch in batches:
            if time.time() - start > args.budget:
                print(f"budget spent: skipped {variant} {frames} {precision} batch {batch}", flush=True)
                continue
            try:
                bench(variant, frames, size, batch, precision, args.runs, args.iters, with_compile, emit, args.peak_tflops,
                      args.roofline)
            except Exception as exc:  # report and go on with the next case
                print(f"FAILED {variant} {frames} {precision} batch {batch}: {type(exc).__name__}: {exc}"[:600], flush=True)


if __name__ == "__main__":
    main()
