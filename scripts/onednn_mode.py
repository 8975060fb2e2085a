#!/usr/bin/env python
"""Which oneDNN mode TensorFlow runs in on this machine by default: prints 1 (on) or 0 (off); with
`--other`, the other one. CI runs the parity, command-line and video tests a second time in the other
mode (`make test-other-onednn`).

TensorFlow turns oneDNN on by default on x86 CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX. It is
asked directly (in a child process without TF_ENABLE_ONEDNN_OPTS, since the variable overrides the
default); without TensorFlow the CPU flags decide.
"""

import os
import subprocess
import sys

PROBE = "from tensorflow.python.util import _pywrap_util_port as p; print(int(p.IsMklEnabled()))"


def default_mode() -> int:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
        if done.returncode == 0 and done.stdout.strip() in ("0", "1"):
            return int(done.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    from video_swin.runtime import ONEDNN_DEFAULT_FLAGS, cpu_flags

    return int(bool(cpu_flags() & set(ONEDNN_DEFAULT_FLAGS)))


if __name__ == "__main__":
    mode = default_mode()
    print(1 - mode if "--other" in sys.argv[1:] else mode)
