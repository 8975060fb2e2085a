"""`video-swin bench`: our model against torchvision's `swin3d_*`, interleaved, on the same weights and input.

Every side runs in its own worker process (a clean peak RSS per side, and PyTorch never shares a process
with TensorFlow). The parent only orchestrates: it starts the workers one at a time, lets each take its
first call (compile) and warm-up alone, then times them round-robin -- one call of each worker per
round, the order rotated every round -- so that all sides see the same machine load. A matmul-ceiling
worker (a 4096x4096 float32 matmul in NumPy) takes part in every round, so "% of ceiling" compares
against the ceiling under the same load.

Sides (`--ours`, `--torch`):
  ours default   `model.predict_on_batch(x)` on the model exactly as `from_preset` returns it (the
                 inference path users get: XLA on TensorFlow, see `model.py`)
  ours eager     `model(x)` eagerly
  ours graph     `tf.function(model)` without XLA
  ours xla       `tf.function(model, jit_compile=True)`
  ours bf16      `model.predict_on_batch(x)` on `from_preset(..., precision="bfloat16")` (a TF graph where
                 oneDNN multiplies bfloat16 natively; float32 with a note where the CPU cannot)
  torch eager    torchvision under `torch.no_grad()`
  torch compile  `torch.compile(model)` under `torch.no_grad()` (inductor; the first call compiles)
  torch autocast torchvision eager under `torch.no_grad()` and `torch.autocast("cpu", dtype=torch.bfloat16)`
Training (`--train`): one optimiser step (forward, cross-entropy, backward, AdamW) on a batch; ours
`train_on_batch` after `compile()` with the default `jit_compile` ("default"), or forced "graph"/"xla".

Weights: a torchvision model initialised with `torch.manual_seed(seed)` is saved as a checkpoint and
converted with our (PyTorch-free) converter into a preset; our workers load that preset. Both sides get
the same seeded input; the report shows the largest logit difference between them.

Figures: median latency (min-max) over `--runs` timed calls after `--warmup` calls, clips/s, CPU seconds
per call (less sensitive to other processes than wall time), first call (trace/compile + run), peak RSS
(VmHWM of the worker), achieved GFLOP/s from an exact multiply-add count of the architecture (padding
included), % of the matmul ceiling, and the ratio to torchvision eager (median of per-round ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "torchvision": "swin3d_t"},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "torchvision": "swin3d_s"},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "torchvision": "swin3d_b"},
}
OURS_MODES = ("default", "eager", "graph", "xla", "bf16")
TORCH_MODES = ("eager", "compile", "autocast")
TRAIN_OURS_MODES = ("default", "graph", "xla")
CEILING_N = 4096
NUM_CLASSES = 400


# --------------------------------------------------------------------------------------------- counting
def multiply_adds(variant, frames, height, width, batch=1, window=(8, 7, 7), patch=(2, 4, 4), num_classes=NUM_CLASSES):
    """Exact multiply-add count of one forward pass, following the model's semantics: window shrink,
    padding to whole windows (padded tokens are computed), patch merging, head. Swin-T at 16x224x224
    gives 43.9 G, at 32x224x224 87.8 G."""
    spec = VARIANTS[variant]
    c = spec["embed_dim"]
    d, h, w = (-(-s // p) for s, p in zip((frames, height, width), patch))
    macs = d * h * w * c * 3 * math.prod(patch)  # patch embedding
    for i, depth in enumerate(spec["depths"]):
        dim = c * 2**i
        win = [s if s <= wsz else wsz for s, wsz in zip((d, h, w), window)]
        padded = [-(-s // wsz) * wsz for s, wsz in zip((d, h, w), win)]
        n, tokens_p, tokens = math.prod(win), math.prod(padded), d * h * w
        per_block = tokens_p * dim * 3 * dim + 2 * tokens_p * n * dim + tokens_p * dim * dim + tokens * 8 * dim * dim
        macs += depth * per_block
        if i < len(spec["depths"]) - 1:
            h, w = -(-h // 2), -(-w // 2)
            macs += d * h * w * 4 * dim * 2 * dim
    macs += 8 * c * num_classes
    return batch * macs


# ---------------------------------------------------------------------------------------------- workers
def _peak_rss_mb():
    """Peak resident memory of this process (VmHWM), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb():
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _send(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _reset_peak_rss():
    """Resets VmHWM (Linux >= 4.0), so that the next peak excludes the first call's tracing/compiling."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _serve(step, info):
    """Worker loop: reports `info`, then answers `run` and `stats` commands from the parent.

    `info` arrives after the first call; the peak RSS is then reset, so `stats` reports both the peak of
    the whole process (first call included) and the peak of the steady state (warm-up and timed calls).
    """
    info["first_call_peak_rss_mb"] = _peak_rss_mb()
    info["after_first_rss_mb"] = _rss_mb()
    info["peak_reset"] = _reset_peak_rss()
    _send({"ready": True, **info})
    for line in sys.stdin:
        command = line.strip()
        if command in ("first", "run"):
            wall, cpu = _timed(step)
            _send({"wall": wall, "cpu": cpu})
        elif command == "stats":
            steady = _peak_rss_mb()
            overall = max(steady, info["first_call_peak_rss_mb"]) if info["peak_reset"] else steady
            _send({"peak_rss_mb": overall, "steady_peak_rss_mb": steady if info["peak_reset"] else None, "rss_mb": _rss_mb()})
        elif command == "quit":
            break


def _worker_prepare(spec):
    """Torch-only process: the seeded torchvision model's checkpoint and the seeded input clip."""
    import numpy as np
    import torch
    import torchvision  # noqa: F401  (before anything could import TensorFlow)
    from torchvision.models import video

    torch.manual_seed(spec["seed"])
    model = getattr(video, VARIANTS[spec["variant"]]["torchvision"])()
    torch.save(model.state_dict(), spec["checkpoint"])
    rng = np.random.default_rng(spec["seed"])
    for path, shape in spec["inputs"]:
        np.save(path, rng.standard_normal(shape).astype("float32"))
    _send({"ready": True})


def _worker_convert(spec):
    from video_swin.checkpoints import convert

    convert.convert_checkpoint(spec["checkpoint"], spec["preset"], drop_path_rate=0.1, overwrite=True)
    _send({"ready": True})


def _torch_threads(torch):
    threads = int(os.environ.get("VIDEO_SWIN_BENCH_THREADS", "0")) or os.cpu_count()
    torch.set_num_threads(threads)
    return threads


def _worker_torch(spec):
    import numpy as np
    import torch
    import torchvision  # noqa: F401
    from torchvision.models import video

    threads = _torch_threads(torch)
    model = getattr(video, VARIANTS[spec["variant"]]["torchvision"])()
    model.load_state_dict(torch.load(spec["checkpoint"]))
    x = np.load(spec["input"])
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3)))
    info = {"threads": threads, "torch": torch.__version__, "load_rss_mb": _rss_mb()}
    if spec["train"]:
        model.train()
        labels = torch.from_numpy(np.arange(x.shape[0]) % NUM_CLASSES)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xt), labels).backward()
            optimizer.step()

        wall, cpu = _timed(step)
        info.update(first_wall=wall, first_cpu=cpu)
        return _serve(step, info)
    model.eval()
    if spec["mode"] == "compile":
        model = torch.compile(model)
    out = {}

    autocast = spec["mode"] == "autocast"

    def step():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out["y"] = model(xt).float()

    # The first call is where torch.compile compiles: run it here, so that a failure is reported.
    try:
        wall, cpu = _timed(step)
    except Exception as exc:  # inductor failures come in many types
        _send({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
        return
    np.save(spec["output"], out["y"].numpy())
    info.update(first_wall=wall, first_cpu=cpu)
    _serve(step, info)


def _worker_ours(spec):
    from video_swin import runtime

    runtime.configure()  # as every entry point of the package does, before TensorFlow's first tensor
    import numpy as np
    import tensorflow as tf

    import keras
    from video_swin.models import presets

    threads = int(os.environ.get("VIDEO_SWIN_BENCH_THREADS", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    mode = spec["mode"]
    model = presets.from_preset(spec["preset"], precision="bfloat16" if mode == "bf16" else "float32")
    x = np.load(spec["input"])
    info = {"tensorflow": tf.__version__, "keras": keras.__version__, "load_rss_mb": _rss_mb(),
            "onednn": runtime.onednn_enabled(), "threads": threads or os.cpu_count(),
            "precision": keras.backend.standardize_dtype(model.compute_dtype)}
    out = {}
    if spec["train"]:
        labels = np.arange(x.shape[0]) % NUM_CLASSES
        kwargs = {} if mode == "default" else {"jit_compile": mode == "xla"}
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            **kwargs,
        )
        info["jit_compile"] = bool(model.jit_compile)

        def step():
            model.train_on_batch(x, labels)

    else:
        if mode in ("default", "bf16"):
            info["jit_compile"] = bool(model._inference_uses_xla())

            def step():
                out["y"] = model.predict_on_batch(x)

        elif mode == "eager":

            def step():
                out["y"] = model(x).numpy()

        else:
            fn = tf.function(lambda v: model(v, training=False), jit_compile=mode == "xla")

            def step():
                out["y"] = fn(x).numpy()

    wall, cpu = _timed(step)
    if "y" in out:
        np.save(spec["output"], np.asarray(out["y"]).astype(np.float32))  # bfloat16 logits: numpy saves no bfloat16
    info.update(first_wall=wall, first_cpu=cpu)
    _serve(step, info)


def _worker_ceiling(spec):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((CEILING_N, CEILING_N), dtype=np.float32)
    b = rng.standard_normal((CEILING_N, CEILING_N), dtype=np.float32)

    def step():
        a @ b

    step()
    _serve(step, {"numpy": np.__version__, "load_rss_mb": _rss_mb()})


PROFILE_CATEGORIES = (
    "dense matmuls (qkv, proj, MLP, merging, head)",
    "attention matmuls (q.kT, attn.v)",
    "softmax",
    "bias + mask (bias gather, adds)",
    "layer norms",
    "GELU",
    "layout copies (shift, partition, qkv split, transposes, pad)",
    "patch embedding conv",
    "other elementwise (residual adds, bias adds, q scale, loops)",
)


def profile_category(op_type, op_name):
    """Sorts one TensorFlow op (graph mode) or XLA kernel (by its TF op metadata) into a category."""
    n, t = op_name, op_type
    in_attention = "/attn" in n and "/qkv" not in n and "/proj" not in n
    if t in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "_FusedMatMul", "Einsum", "dot"):
        return PROFILE_CATEGORIES[1] if in_attention else PROFILE_CATEGORIES[0]
    if t.startswith("Conv3D"):
        return PROFILE_CATEGORIES[7]
    if "Softmax" in t or "softmax" in n.lower():
        return PROFILE_CATEGORIES[2]
    if in_attention and t in ("GatherV2", "AddV2", "Add", "SelectV2", "Equal", "Cast"):
        return PROFILE_CATEGORIES[3]
    if ("norm" in n.split("/")[-2] if "/" in n else False) or "/norm" in n:
        if t not in ("Transpose", "Reshape", "StridedSlice", "ConcatV2"):
            return PROFILE_CATEGORIES[4]
    if "/mlp" in n and t in ("Erf", "Erfc", "Mul", "AddV2", "Add", "RealDiv"):
        return PROFILE_CATEGORIES[5]
    if t in ("Transpose", "Reshape", "StridedSlice", "ConcatV2", "Pad", "PadV2", "Slice", "Identity", "Split") or t.startswith("TensorList"):
        return PROFILE_CATEGORIES[6]
    return PROFILE_CATEGORIES[8]


def _worker_profile(spec):
    """Profiles our forward pass (graph or XLA) with the TensorFlow profiler: per-op time, the minimum
    over `runs` profiled calls, summed per category."""
    import collections
    import glob
    import re
    import shutil

    dump = Path(spec["workdir"]) / f"xla_dump_{os.getpid()}"
    if spec["mode"] == "xla":
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*lambda.*"
        )
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from video_swin.models import presets

    model = presets.from_preset(spec["preset"])
    x = np.load(spec["input"])
    fn = tf.function(lambda v: model(v, training=False), jit_compile=spec["mode"] == "xla")
    fn(x)
    fn(x)
    metadata = {}
    if spec["mode"] == "xla":
        pattern = re.compile(r'\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{op_type="(\w+)" op_name="([^"]+)"')
        for path in glob.glob(str(dump / "*after_optimizations.txt")):
            for line in open(path):
                match = pattern.match(line)
                if match:
                    metadata[match.group(1)] = (match.group(2), match.group(3))
        shutil.rmtree(dump, ignore_errors=True)
    best, walls = {}, []
    for r in range(spec["runs"]):
        logdir = Path(spec["workdir"]) / f"profile_{os.getpid()}_{r}"
        shutil.rmtree(logdir, ignore_errors=True)
        tf.profiler.experimental.start(str(logdir))
        wall = time.perf_counter()
        fn(x)
        walls.append(time.perf_counter() - wall)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(open(glob.glob(str(logdir / "**" / "*.xplane.pb"), recursive=True)[0], "rb").read())
        shutil.rmtree(logdir, ignore_errors=True)
        totals = collections.Counter()
        for plane in space.planes:
            for line in plane.lines:
                if line.name == "python":
                    continue
                for event in line.events:
                    totals[plane.event_metadata[event.metadata_id].name] += event.duration_ps / 1e9
        for name, ms in totals.items():
            best[name] = min(best.get(name, float("inf")), ms)
    categories = collections.Counter()
    for name, ms in best.items():
        if spec["mode"] == "xla":
            if name not in metadata or name.startswith(("while", "call", "conditional")):
                continue  # executor and loop events contain the kernels' own events
            op_type, op_name = metadata[name]
            if name.startswith(("dot", "MatMul")) or ".dot" in name:
                op_type = "dot"
        else:
            if ":" not in name or name.startswith("ExecutorState"):
                continue
            op_name, op_type = name.rsplit(":", 1)
            if op_type in ("While", "StatelessWhile", "PartitionedCall", "StatefulPartitionedCall"):
                continue
        categories[profile_category(op_type, op_name)] += ms
    _send({"ready": True, "categories": dict(categories), "walls": walls})


WORKERS = {
    "profile": _worker_profile,
    "prepare": _worker_prepare,
    "convert": _worker_convert,
    "torch": _worker_torch,
    "ours": _worker_ours,
    "ceiling": _worker_ceiling,
}


# ----------------------------------------------------------------------------------------------- parent
class Worker:
    """One side in its own process. The process is launched by `start`, not before: the workers of a
    group then import, load and make their first call one at a time, so that no first-call time or
    memory figure includes another worker's start-up."""

    def __init__(self, name, spec, log):
        self.name, self.spec, self.log = name, spec, log
        self.proc = None
        self.walls, self.cpus, self.info, self.error = [], [], {}, None

    def command(self):
        """The worker process's command line (a benchmark script may run workers of its own)."""
        return [sys.executable, "-m", "video_swin.checks.bench", "--worker", json.dumps(self.spec)]

    def environment(self):
        return dict(os.environ, PYTHONUNBUFFERED="1")

    def _launch(self):
        env = self.environment()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )

    def read(self, timeout=None):
        import selectors

        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{self.name}: no answer within {timeout:.0f} s")
                if not sel.select(left):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name}: worker exited (code {self.proc.wait()}), see {self.log.name}")
                if line.startswith("@@"):
                    return json.loads(line[2:])

    def ask(self, command, timeout=None):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def start(self, timeout):
        t0 = time.perf_counter()
        self._launch()
        try:
            answer = self.read(timeout)
        except (TimeoutError, RuntimeError) as exc:
            self.error = str(exc)
            self.stop()
            return False
        if "error" in answer:
            self.error = answer["error"]
            self.stop()
            return False
        self.info = answer
        self.info["startup_wall"] = time.perf_counter() - t0
        return True

    def run(self):
        answer = self.ask("run")
        self.walls.append(answer["wall"])
        self.cpus.append(answer["cpu"])

    def finish(self):
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.info.update(self.ask("stats", timeout=60))
        self.stop()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _median(values):
    values = sorted(values)
    n = len(values)
    return float("nan") if n == 0 else (values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2]))


def _run_group(workers, runs, warmup, first_timeout, say):
    """Starts the workers one by one (first call alone), then times them round-robin."""
    alive = []
    for worker in workers:
        say(f"  starting {worker.name} ...")
        if worker.start(first_timeout):
            for _ in range(warmup):
                worker.ask("run", timeout=first_timeout)
            alive.append(worker)
            first = worker.info.get("first_wall")
            say(f"  {worker.name}: ready" + (f", first call {first:.1f} s" if first is not None else ""))
        else:
            say(f"  {worker.name}: FAILED: {worker.error}")
    for r in range(runs):
        order = alive[r % len(alive) :] + alive[: r % len(alive)] if alive else []
        for worker in order:
            worker.run()
        say(f"  round {r + 1}/{runs}: " + ", ".join(f"{w.name} {w.walls[-1]:.2f}s" for w in alive))
    for worker in alive:
        worker.finish()


def _summarise(worker, flops, ceiling, references, batch):
    """`references`: the torch sides of the cell by name; a row gets its per-round ratio to each
    (`ratio_to_torch_eager`, `ratio_to_torch_autocast`, ...)."""
    keys = ("first_wall", "first_cpu", "peak_rss_mb", "steady_peak_rss_mb", "load_rss_mb", "after_first_rss_mb", "jit_compile",
            "precision", "onednn", "threads")
    row = {"side": worker.name, **{k: worker.info.get(k) for k in keys}}
    if worker.error or not worker.walls:
        row["error"] = worker.error or "no runs"
        return row
    median = _median(worker.walls)
    row.update(
        median_s=median,
        min_s=min(worker.walls),
        max_s=max(worker.walls),
        cpu_s=_median(worker.cpus),
        clips_per_s=batch / median,
        runs=len(worker.walls),
    )
    if flops:
        row["gflops"] = flops / median / 1e9
        if ceiling:
            row["pct_ceiling"] = 100 * row["gflops"] / ceiling
    for name, reference in references.items():
        if reference.walls and len(reference.walls) == len(worker.walls):
            key = name.replace(" ", "_")
            row[f"ratio_to_{key}"] = _median([a / b for a, b in zip(worker.walls, reference.walls)])
            row[f"cpu_ratio_to_{key}"] = _median([a / b for a, b in zip(worker.cpus, reference.cpus)])
    return row


def summarise_rows(workers, ceiling_worker, flops, references, batch):
    """One cell's rows (`_summarise`) and the matmul ceiling in GFLOP/s that `ceiling_worker` measured in the
    same rounds (None without one); the ceiling's own row is 100 % of it."""
    ceiling = None
    if ceiling_worker is not None and ceiling_worker.walls:
        ceiling = 2 * CEILING_N**3 / _median(ceiling_worker.walls) / 1e9
    rows = []
    for worker in workers:
        row = _summarise(worker, None if worker is ceiling_worker else flops, ceiling, references, batch)
        if worker is ceiling_worker and ceiling is not None:
            row["gflops"], row["pct_ceiling"] = ceiling, 100.0
        rows.append(row)
    return rows, ceiling


def _fmt(value, spec):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown_table(cell):
    head = (
        "| side | median s (min-max) | clips/s | CPU s/call | GFLOP/s | % ceiling | ours/torch eager (CPU) "
        "| first call s (CPU s) | peak RSS MiB: steady / incl. first call |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in cell["rows"]:
        if "error" in row:
            lines.append(f"| {row['side']} | failed: {row['error'][:120]} | | | | | | | |")
            continue
        lines.append(
            f"| {row['side']} | {row['median_s']:.3f} ({row['min_s']:.3f}-{row['max_s']:.3f}) "
            f"| {row['clips_per_s']:.2f} | {_fmt(row.get('cpu_s'), '.2f')} | {_fmt(row.get('gflops'), '.1f')} "
            f"| {_fmt(row.get('pct_ceiling'), '.0f')} | {_fmt(row.get('ratio_to_torch_eager'), '.2f')} "
            f"({_fmt(row.get('cpu_ratio_to_torch_eager'), '.2f')}) "
            f"| {_fmt(row.get('first_wall'), '.1f')} ({_fmt(row.get('first_cpu'), '.1f')}) "
            f"| {_fmt(row.get('steady_peak_rss_mb'), '.0f')} / {_fmt(row.get('peak_rss_mb'), '.0f')} |"
        )
    return head + "\n".join(lines) + "\n"


def profile_table(profile):
    total = sum(profile["categories"].values())
    lines = [
        f"| where the time goes ({profile['mode']}) | ms (sum of op times, min of {len(profile['walls'])} runs) | share |",
        "|---|---|---|",
    ]
    for name, ms in sorted(profile["categories"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {ms:.0f} | {100 * ms / total:.1f}% |")
    walls = ", ".join(f"{w:.2f}" for w in profile["walls"])
    lines.append(f"| total | {total:.0f} | (profiled calls took {walls} s) |")
    return "\n".join(lines) + "\n"


def machine_description():
    from video_swin import runtime

    cpu = runtime.cpu_model()
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    load = ""
    with contextlib.suppress(OSError):
        load = f", load average {Path('/proc/loadavg').read_text().split()[0]} at start"
    # Memory-allocator settings move both sides' times (benchmarks/HISTORY.md), so a run names them.
    allocator = ", ".join(
        f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_") or k == "TF_CPU_ALLOCATOR_USE_BFC"
    )
    allocator = f"; environment: {allocator}" if allocator else ""
    flags = runtime.cpu_flags()
    wanted = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    present = ", ".join(f for f in wanted if f in flags) or "none of " + "/".join(wanted)
    onednn = "on" if runtime.onednn_enabled(flags) else "off"
    threads = os.environ.get("VIDEO_SWIN_BENCH_THREADS") or f"{os.cpu_count()} (all)"
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, Linux {platform.release()}, Python {platform.python_version()}{load}; "
        f"CPU flags: {present}; oneDNN {onednn}; threads {threads}{allocator}"
    )


def prepare(out_dir, variant, seed, shapes, log, timeout):
    """Seeded torchvision weights saved as `out_dir/<variant>.pth`, converted into `out_dir/<variant>-preset`,
    and a seeded input clip per shape; returns (checkpoint, preset, {shape: clip path})."""
    checkpoint, preset = out_dir / f"{variant}.pth", out_dir / f"{variant}-preset"
    inputs = {shape: out_dir / ("x_" + "x".join(map(str, shape)) + ".npy") for shape in shapes}
    for kind, spec in (
        ("prepare", {"variant": variant, "seed": seed, "checkpoint": str(checkpoint), "inputs": [(str(p), s) for s, p in inputs.items()]}),
        ("convert", {"checkpoint": str(checkpoint), "preset": str(preset)}),
    ):
        worker = Worker(kind, {"kind": kind, **spec}, log)
        if not worker.start(timeout):
            raise RuntimeError(f"{kind} failed: {worker.error}")
        worker.stop()
    return checkpoint, preset, inputs


def save_results(path, results):
    """Writes the results so far to `path` (None: nowhere); called after every cell, so that a run cut short
    keeps what it measured."""
    if path:
        Path(path).write_text(json.dumps(results, indent=1) + "\n")


def run(args, say=print):
    """Runs the benchmark described by parsed `args` (see `add_arguments`) and returns the results dict."""
    variants = args.variants
    args.train = args.train or args.train_only
    ours_modes = [m for m in args.ours if m != "none"]
    torch_modes = [m for m in args.torch if m != "none"]
    out_dir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="video-swin-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "workers.log", "a")
    results = {"machine": machine_description(), "args": {k: v for k, v in vars(args).items() if k != "func"}, "cells": []}
    say(f"machine: {results['machine']}\nworker logs: {log.name}")
    t_start = time.perf_counter()
    for variant in variants:
        shapes = [(b, t, args.size, args.size, 3) for t in args.frames for b in args.batch]
        if args.train:
            shapes.append((args.train_batch, args.train_frames, args.size, args.size, 3))
        say(f"[{variant}] preparing seeded torchvision weights, input clips and the converted preset")
        checkpoint, preset, inputs = prepare(out_dir, variant, args.seed, shapes, log, args.first_timeout)
        cells = [] if args.train_only else [(b, t, False) for t in args.frames for b in args.batch]
        if args.train and variant == variants[0]:
            cells.append((args.train_batch, args.train_frames, True))
        for batch, frames, train in cells:
            shape = (batch, frames, args.size, args.size, 3)
            label = f"{variant} {'training step' if train else 'inference'}, batch {batch}, {frames}x{args.size}x{args.size}"
            say(f"[{label}]")
            common = {"variant": variant, "checkpoint": str(checkpoint), "preset": str(preset), "input": str(inputs[shape]), "train": train}
            workers = [Worker("matmul ceiling", {"kind": "ceiling"}, log)] if args.ceiling else []
            side_modes = [("torch", m) for m in (["eager"] if train else torch_modes)]
            side_modes += [("ours", m) for m in (args.train_ours if train else ours_modes)]
            for kind, mode in side_modes:
                output = out_dir / f"y_{kind}_{mode}_{variant}_{batch}x{frames}.npy"
                workers.append(Worker(f"{kind} {mode}", {"kind": kind, "mode": mode, "output": str(output), **common}, log))
            _run_group(workers, args.runs, args.warmup, args.first_timeout, say)
            flops = 2 * multiply_adds(variant, frames, args.size, args.size, batch) * (3 if train else 1)
            references = {w.name: w for w in workers if w.name.startswith("torch ")}
            rows, ceiling = summarise_rows(workers, workers[0] if args.ceiling else None, flops, references, batch)
            cell = {
                "variant": variant,
                "batch": batch,
                "frames": frames,
                "size": args.size,
                "train": train,
                "gflop_per_call": flops / 1e9,
                "ceiling_gflops": ceiling,
                "rows": rows,
            }
            if not train:
                cell["max_abs_logit_diff"] = _logit_differences(out_dir, variant, batch, frames)
            results["cells"].append(cell)
            say("")
            say(f"{label}: {cell['gflop_per_call']:.1f} GFLOP per call" + (" (training: 3x forward)" if train else ""))
            say(markdown_table(cell))
            for row in rows:
                others = {k[len("ratio_to_"):]: v for k, v in row.items()
                          if k.startswith("ratio_to_torch_") and k != "ratio_to_torch_eager"}
                if others and not row["side"].startswith("torch"):
                    say(f"{row['side']}: " + ", ".join(f"{v:.2f} x {k.replace('_', ' ')}" for k, v in others.items()))
            if cell.get("max_abs_logit_diff"):
                say("largest |logit difference| against torch eager: " + ", ".join(f"{k} {v:.1e}" for k, v in cell["max_abs_logit_diff"].items()))
            save_results(args.json, results)
        for mode in args.profile:
            say(f"[{variant} profile of our {mode} forward pass, batch {args.batch[0]}, {args.frames[0]}x{args.size}x{args.size}]")
            shape = (args.batch[0], args.frames[0], args.size, args.size, 3)
            spec = {"kind": "profile", "mode": mode, "preset": str(preset), "input": str(inputs[shape]), "runs": args.profile_runs, "workdir": str(out_dir)}
            worker = Worker(f"profile {mode}", spec, log)
            if not worker.start(args.first_timeout):
                say(f"  profile failed: {worker.error}")
                continue
            worker.stop()
            profile = {"variant": variant, "mode": mode, "shape": shape, **worker.info}
            results.setdefault("profiles", []).append(profile)
            say(profile_table(profile))
            save_results(args.json, results)
    results["total_wall_s"] = time.perf_counter() - t_start
    save_results(args.json, results)
    log.close()
    return results


def _logit_differences(out_dir, variant, batch, frames):
    import numpy as np

    reference = out_dir / f"y_torch_eager_{variant}_{batch}x{frames}.npy"
    if not reference.is_file():
        return {}
    want = np.load(reference)
    diffs = {}
    for path in sorted(out_dir.glob(f"y_*_{variant}_{batch}x{frames}.npy")):
        if path != reference:
            side = path.name[2:].rsplit(f"_{variant}_", 1)[0].replace("_", " ")
            diffs[side] = float(np.abs(np.load(path) - want).max())
    return diffs


def _csv(choices):
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(choices)}")
        return values

    return parse


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def add_arguments(p):
    p.add_argument("--variants", type=_csv(tuple(VARIANTS)), default=["tiny"], help="comma-separated: tiny,small,base (default tiny)")
    p.add_argument("--frames", type=_ints, default=[16], help="comma-separated clip lengths (default 16)")
    p.add_argument("--batch", type=_ints, default=[1], help="comma-separated batch sizes (default 1)")
    p.add_argument("--size", type=int, default=224, help="frame height and width (default 224)")
    p.add_argument("--runs", type=int, default=5, help="timed rounds after warm-up (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per side after the first call (default 1)")
    p.add_argument("--ours", type=_csv(OURS_MODES + ("none",)), default=["default", "graph", "eager"], help="our sides: default,eager,graph,xla (default default,graph,eager)")
    p.add_argument("--torch", type=_csv(TORCH_MODES + ("none",)), default=["eager"], help="torchvision sides: eager,compile (default eager)")
    p.add_argument("--train", action="store_true", help="also time a training step (first variant only)")
    p.add_argument("--train-only", action="store_true", help="only the training step (implies --train)")
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--train-frames", type=int, default=16)
    p.add_argument("--train-ours", type=_csv(TRAIN_OURS_MODES), default=["default"], help="our training sides: default,graph,xla")
    p.add_argument("--no-ceiling", dest="ceiling", action="store_false", help="skip the matmul-ceiling worker")
    p.add_argument("--profile", type=_csv(("graph", "xla")), default=[], help="also profile our forward pass: graph,xla (TF profiler, per-op categories)")
    p.add_argument("--profile-runs", type=int, default=3, help="profiled calls; each op's minimum is kept (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-timeout", type=float, default=1800, help="seconds allowed for a worker's start and first call")
    p.add_argument("--workdir", help="folder for checkpoints, inputs, outputs and worker logs (default: a temp folder)")
    p.add_argument("--json", help="write all figures to this JSON file")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        spec = json.loads(argv[1])
        WORKERS[spec["kind"]](spec)
        return 0
    parser = add_arguments(argparse.ArgumentParser(prog="video-swin bench", description=__doc__.split("\n")[0]))
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
