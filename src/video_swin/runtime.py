"""Process-wide runtime settings, in one place, applied by one call: `configure()`.

Nothing here happens on import. The entry points call `configure()`: the `video-swin` command,
`from_preset`, `VideoClassifier`, the training loop and the benchmarks. Code that builds a model by hand
calls it once, first thing (the allocator setting must precede TensorFlow's first tensor)::

    import video_swin.runtime
    video_swin.runtime.configure()

Each setting, what it measured, and how to turn it off (every one also keeps a value you set yourself):

| setting | what it does | measured (benchmarks/HISTORY.md) | off |
|---|---|---|---|
| pooled CPU allocator | `TF_CPU_ALLOCATOR_USE_BFC=true`: TensorFlow keeps freed buffers for reuse | the default allocator page-faults every buffer afresh: 2.2 GiB of pages per Swin-T training step at batch 2 x 16x224², 74-233 MiB per inference call | `configure(pooled_allocator=False)` or set the variable yourself |
| memory-minimising XLA schedule | adds `--xla_cpu_enable_concurrency_optimized_scheduler=false` to `XLA_FLAGS` | Swin-T 16x224²: XLA's temporary buffer 206 -> 92 MiB at the same speed | `configure(memory_minimising_xla_schedule=False)` or set the flag yourself |
| giving freed heap back | glibc `malloc_trim` after a new input shape compiles, and every 0.25 s during a training step's compile | ~220 MiB of the compiler's freed memory leaves the steady state; the first training step peaks 4456-4599 -> 3887-3987 MiB | `configure(release_freed_heap=False)` |

`VIDEO_SWIN_RUNTIME=off` in the environment makes `configure()` do nothing.

What the CPU offers is read here too (`cpu_flags`, `onednn_enabled`, `native_bfloat16`): bfloat16 inference
(`precision="bfloat16"`) pays only where oneDNN runs bfloat16 matmuls natively.
`quiet_native_stderr()` is separate: the command line uses it so that only its own lines reach stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading

POOLED_CPU_ALLOCATOR = ("TF_CPU_ALLOCATOR_USE_BFC", "true")
MEMORY_MINIMISING_XLA_SCHEDULE = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
# How often `releasing_freed_heap` gives freed memory back while a training step compiles.
FREED_HEAP_RELEASE_PERIOD_S = 0.25

_state = {"release_freed_heap": False}


def configure(*, pooled_allocator=True, memory_minimising_xla_schedule=True, release_freed_heap=True):
    """Applies the settings of the module's table. Idempotent; keeps the user's own environment values.

    The allocator takes effect only if TensorFlow has not made a tensor yet in this process, the XLA
    flag only if XLA has not compiled anything yet; `release_freed_heap` at once.
    """
    if os.environ.get("VIDEO_SWIN_RUNTIME", "").lower() == "off":
        return
    if pooled_allocator:
        os.environ.setdefault(*POOLED_CPU_ALLOCATOR)
    if memory_minimising_xla_schedule:
        prefer_memory_minimising_xla_schedule()
    _state["release_freed_heap"] = bool(release_freed_heap)


def prefer_memory_minimising_xla_schedule():
    """Adds `MEMORY_MINIMISING_XLA_SCHEDULE` to XLA_FLAGS unless the flag is set there already.

    XLA's CPU scheduler orders a program for concurrency by default, which starts every block's position
    bias (and more) early and keeps it alive. XLA reads XLA_FLAGS once, at its first compilation.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {MEMORY_MINIMISING_XLA_SCHEDULE}".strip()


def release_freed_heap():
    """Gives the heap memory the process has freed back to the OS (glibc's `malloc_trim`), when
    `configure()` turned it on. XLA's compiler frees what it allocated, but glibc keeps those pages
    resident (about 220 MiB after compiling Swin-T at 16x224x224), which would count in every later peak.
    A no-op without glibc."""
    if not _state["release_freed_heap"]:
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def releasing_freed_heap():
    """Runs `release_freed_heap` every `FREED_HEAP_RELEASE_PERIOD_S` seconds on a background thread while
    the block runs, and once after it. For the first training step, which compiles: XLA's compiler frees
    memory as it goes, and what glibc keeps of it would otherwise stay resident under the first run's own
    buffers (Swin-T at batch 2: first-step peak 4456-4599 -> 3887-3987 MiB, for ~3 s more of a ~45 s
    step). Nothing runs unless `configure()` turned the release on."""
    if not _state["release_freed_heap"]:
        yield
        return
    stop = threading.Event()

    def release_until_stopped():
        while not stop.wait(FREED_HEAP_RELEASE_PERIOD_S):
            release_freed_heap()

    thread = threading.Thread(target=release_until_stopped, name="release-freed-heap", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release_freed_heap()


def quiet_native_stderr(log_path=None):
    """Keeps what native libraries write to file descriptor 2 off the terminal; Python's `sys.stderr`
    still reaches it.

    TensorFlow's C++ side (absl's "All log messages before absl::InitializeLog()" and the oneDNN notice
    on CPUs with AVX512_VNNI/BF16, XLA's compile messages) writes straight to fd 2, before and regardless
    of `TF_CPP_MIN_LOG_LEVEL`. Here fd 2 is pointed at `log_path` (default: `$VIDEO_SWIN_NATIVE_LOG`, else
    /dev/null) and `sys.stderr` at a duplicate of the original stream, so a command's own messages
    (errors, progress bars) remain. Child processes inherit the quiet fd 2. Also lowers TensorFlow's and
    absl's Python loggers to errors. Call it before importing TensorFlow.
    """
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl", "jax", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    log_path = log_path or os.environ.get("VIDEO_SWIN_NATIVE_LOG") or os.devnull
    try:
        sys.stderr.flush()
        original = os.dup(2)
        target = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    os.dup2(target, 2)
    os.close(target)
    sys.stderr = os.fdopen(original, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                           errors="backslashreplace")


# ---------------------------------------------------------------------------------------------- the CPU

# TensorFlow turns oneDNN on by default on x86 CPUs with any of these (its `IsDataTypeSupportedByOneDNNOnThisCPU`
# rule; `TF_ENABLE_ONEDNN_OPTS=0/1` overrides it).
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")
# Instructions that multiply bfloat16 natively (AVX512_BF16's dot products, AMX's tiles).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def onednn_enabled(flags=None) -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN in this process: TensorFlow's own answer once
    it is imported, before that `TF_ENABLE_ONEDNN_OPTS` when set, else TensorFlow's default for this CPU."""
    if flags is None and "tensorflow" in sys.modules:
        try:
            from tensorflow.python.util import _pywrap_util_port

            return bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            pass
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None and setting.strip() != "":
        return setting.strip().lower() in ("1", "true", "yes")
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in ONEDNN_DEFAULT_FLAGS)


def native_bfloat16(flags=None) -> tuple[bool, str]:
    """(whether bfloat16 matmuls run natively here, and if not the one-line reason)."""
    flags = cpu_flags() if flags is None else flags
    if not any(f in flags for f in BFLOAT16_FLAGS):
        return False, "this CPU has no bfloat16 instructions (AVX512_BF16 or AMX)"
    if not onednn_enabled(flags):
        return False, "TensorFlow's oneDNN kernels are off (TF_ENABLE_ONEDNN_OPTS=0), so bfloat16 would be emulated"
    return True, ""


def inference_precision(requested: str, on_cpu: bool = True, flags=None) -> tuple[str, str | None]:
    """The precision to run inference in for a requested one, and a one-line notice when it differs.

    bfloat16 on a CPU without native bfloat16 matmuls would be a slow emulation (XLA's and Eigen's), so it
    runs float32 instead and says so. Off the CPU (a GPU) every precision is taken as asked.
    """
    if requested != "bfloat16" or not on_cpu:
        return requested, None
    native, reason = native_bfloat16(flags)
    if native:
        return requested, None
    return "float32", f"bfloat16 requested, running float32: {reason}"
