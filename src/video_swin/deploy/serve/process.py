"""`video-swin serve` as a child process: started, waited for, stopped (tests, benchmarks, scripts).

    with ServerProcess("synthetic-motion", "--max-batch", "16") as server:
        httpx.post(f"{server.url}/v1/classify", files={"file": open("clip.mp4", "rb")})
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_READY = re.compile(r"^video-swin serve: (http://\S+) ")


class ServerProcess:
    """Runs `python -m video_swin.cli serve --preset PRESET --port 0 ARGS...`; `url` once it listens.

    Its stdout (the ready line, the access log) and stderr go to files in `log_dir` (a new temporary folder
    by default), so a busy server never blocks on a full pipe; `log()` reads them back.
    """

    def __init__(self, preset, *args, env=None, log_dir=None, start_timeout_s=300.0):
        self.preset, self.args = preset, [str(a) for a in args]
        self.env = {**os.environ, **(env or {})}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="video-swin-serve-log-"))
        self.start_timeout_s = start_timeout_s
        self.process = None
        self.url = None

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"serve-{time.monotonic_ns()}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        command = [sys.executable, "-m", "video_swin.cli", "serve", "--preset", str(self.preset), "--port", "0", *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                match = _READY.match(line)
                if match:
                    self.url = match.group(1)
                    return self
            if self.process.poll() is not None:
                raise RuntimeError(f"video-swin serve exited with {self.process.returncode}: {self.log()[-2000:]}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"video-swin serve did not listen within {self.start_timeout_s:g} s: {self.log()[-2000:]}")

    def log(self):
        parts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path) if p.exists()]
        return "\n".join(parts)

    def stop(self, timeout_s=60.0):
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL if it is still there after `timeout_s`."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
