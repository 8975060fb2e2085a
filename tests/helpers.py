"""Assertions shared by the test modules: the command line's one-line error contract, float32 tolerances
stated in units in the last place, and binomial floors for accuracy claims."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# What TensorFlow, absl, XLA, oneDNN, CUDA and glog-style native loggers print (e.g. "I0000 00:00:...
# port.cc:153] oneDNN custom operations are on", "WARNING: All log messages before absl::InitializeLog()
# is called are written to STDERR"). None of it may reach a `video-swin` command's stdout or stderr.
NATIVE_LINE = re.compile(
    r"^[IWEF]\d{4} |absl::|oneDNN custom operations|TF_ENABLE_ONEDNN_OPTS=0`|tensorflow/|external/local_xla|XLA service|"
    r"StreamExecutor|Compiled cluster using XLA|rebuild TensorFlow|Could not find cuda drivers|TF-TRT",
    re.MULTILINE,
)


def run_cli(*args, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """`python -m video_swin.cli ARGS` in a fresh process: the `video-swin` executable's own path
    (`video_swin.cli:console`, which keeps native libraries' lines off stderr), with this tree's sources
    first on the path. `env` entries are added to the current environment (None removes one)."""
    merged = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    for key, value in (env or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return subprocess.run([sys.executable, "-m", "video_swin.cli", *map(str, args)], capture_output=True, text=True,
                          env=merged, timeout=timeout, cwd=cwd)


def assert_no_native_lines(text: str) -> None:
    """No line of `text` comes from TensorFlow's / absl's / XLA's native logging."""
    found = NATIVE_LINE.search(text)
    assert found is None, f"a native library's line reached the output: {text[max(0, found.start() - 200):][:600]!r}"


def assert_one_line_error(stderr: str, *fragments: str) -> str:
    """The WHOLE of `stderr` is exactly one line, `video-swin: error: ...` ending in a newline, containing
    every fragment. Returns the line. (A traceback, a usage block, a native library's notice or a second
    message all make a second line and fail here.)"""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"stderr is not exactly one line: {stderr!r}"
    line = stderr[:-1]
    assert line.startswith("video-swin: error: ") and line[len("video-swin: error: "):].strip(), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def assert_refused_in_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """A command run by `run_cli` failed with a non-zero status, its stderr one line (see
    `assert_one_line_error`) and its stdout free of native libraries' lines."""
    assert result.returncode != 0, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert_no_native_lines(result.stdout)
    return assert_one_line_error(result.stderr, *fragments)


def float32_ulp(magnitude) -> np.ndarray:
    """The spacing of float32 numbers at |magnitude| (elementwise), as float64."""
    return np.spacing(np.abs(np.asarray(magnitude, np.float64)).astype(np.float32)).astype(np.float64)


def assert_within_float32_ulps(actual, reference, ulps: float, magnitude=None, err_msg="") -> None:
    """|actual - reference| <= ulps * ulp_float32(magnitude), elementwise; `magnitude` defaults to the
    reference itself. The reference is float64 (or exact); `actual` is a float32 computation of it."""
    actual = np.asarray(actual, np.float64)
    reference = np.asarray(reference, np.float64)
    scale = float32_ulp(reference if magnitude is None else np.broadcast_to(magnitude, reference.shape))
    error = np.abs(actual - reference) / scale
    worst = np.unravel_index(np.argmax(error), error.shape) if error.size else ()
    assert error.size == 0 or error.max() <= ulps, (
        f"{err_msg} max error {error.max():.3f} float32 ulps > {ulps} at {worst}: "
        f"actual {actual[worst]!r}, reference {reference[worst]!r}"
    )


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), exactly."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(0, min(k, n) + 1)))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p), summed directly (no cancellation for tiny tails)."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k + 1, 0), n + 1)))


def binomial_floor(n: int, p: float, alpha: float = 1e-3) -> int:
    """The largest count k such that a classifier whose true accuracy is `p` scores fewer than k correct
    out of n with probability <= alpha: holding a claim "accuracy >= p" to `correct >= k` fails a model
    that meets the claim at most once in 1/alpha draws of the test set."""
    k = 0
    while k < n and binomial_cdf(k, n, p) <= alpha:  # P(X <= k) = P(X < k + 1)
        k += 1
    return k
