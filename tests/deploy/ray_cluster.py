"""A Ray cluster of several node processes on 127.0.0.1, for tests and benchmarks.

Each node is a `ray start --block` process of its own, so the cluster has real node boundaries (separate
raylets and object stores). Teardown ends only this cluster's processes, by PID: `ray stop` would end every
Ray process of the user on the machine, other people's clusters included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(paths, extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    # RAY_AUTH_MODE: a token in ~/.ray/auth_token (which a local `ray.init()` writes) would otherwise turn
    # token authentication on for the head and not for the nodes joining it.
    env.update({"RAY_memory_monitor_refresh_ms": "0", "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2",
                "RAY_AUTH_MODE": "disabled"})
    env.update(extra or {})
    return env


def driver_environment(extra=None):
    """For drivers the tests start: this checkout's package and its `tests` package (task classes the tests
    define), and Ray's memory monitor off (on a machine shared with other jobs it would kill our workers
    for their memory)."""
    return _environment([REPO / "src", REPO], extra)


def node_environment(extra=None):
    """For the nodes (their workers inherit it): the `tests` package but NOT this checkout's `video_swin`.
    The workers run the package the driver ships (`runtime_env` `py_modules`); whatever `video_swin` the
    environment has installed (here the venv's, from another checkout) is not this branch's."""
    return _environment([REPO], extra)


class LocalCluster:
    """`nodes` node processes (the first is the head) of `cpus` logical CPUs each."""

    def __init__(self, nodes=2, cpus=2, object_store_bytes=200_000_000, env=None):
        # Unix socket paths under the temp dir must stay short (~107 bytes): not pytest's tmp_path.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="vsray", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"  # Ray Client, served by the head
        self.env = node_environment(env)  # the nodes'
        self.driver_env = driver_environment(env)
        self.nodes, self.cpus, self.object_store_bytes = nodes, cpus, object_store_bytes
        self.processes = []

    def start(self, timeout_s=180):
        try:
            for index in range(self.nodes):
                self._start_node(index, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, index, timeout_s):
        log = self.temp_dir / f"node{index}.log"
        common = [f"--num-cpus={self.cpus}", f"--object-store-memory={self.object_store_bytes}",
                  "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
                  f"--dashboard-agent-listen-port={free_port()}", "--block"]
        if index == 0:
            role = ["--head", f"--port={self.port}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
                    f"--ray-client-server-port={self.client_port}"]
        else:
            role = [f"--address={self.address}"]
        with open(log, "wb") as out:
            process = subprocess.Popen([str(RAY), "start", *role, *common], stdout=out, stderr=subprocess.STDOUT,
                                       env=self.env, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + timeout_s
        while b"Ray runtime started" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {index} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    # -- the cluster's processes -------------------------------------------------------------------------

    def _cluster_pids(self):
        """The node processes and every process whose command line names this cluster's temp dir."""
        pids = {p.pid for p in self.processes if p.poll() is None}
        marker = str(self.temp_dir).encode()
        for pid in _pids():
            with contextlib.suppress(OSError):
                if marker in _cmdline(pid):
                    pids.add(pid)
        return pids

    def _raylets(self):
        return {pid for pid in self._cluster_pids() if _cmdline(pid).split(b"\0")[0].endswith(b"raylet")}

    def workers(self, title_contains=""):
        """{pid: process title} of the worker processes (the raylets' children) whose title contains
        `title_contains`, e.g. "ray::MapWorker(MapBatches(ModelStage)).submit" for an actor in a task."""
        raylets = self._raylets()
        found = {}
        for pid in _pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                title = _cmdline(pid).split(b"\0")[0].decode(errors="replace")
                if _ppid(pid) in raylets and title.startswith("ray::") and title_contains in title:
                    found[pid] = title
        return found

    def _members(self, raylets):
        """Every live process of this cluster: `_cluster_pids`, the workers of `raylets` (by parent, or by
        RAY_RAYLET_PID once a dead raylet left them to init), and their descendants."""
        members = self._cluster_pids()
        marks = {f"RAY_RAYLET_PID={pid}".encode() for pid in raylets}
        for pid in _pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if _ppid(pid) in raylets or set((Path(f"/proc/{pid}") / "environ").read_bytes().split(b"\0")) & marks:
                    members.add(pid)
        while True:
            children = {pid for pid in _pids() if _ppid(pid) in members} - members
            if not children:
                return members
            members |= children

    def stop(self):
        raylets = self._raylets()
        for process in self.processes:  # `ray start --block` stops its node on SIGTERM (after draining)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.2)
        for _ in range(5):  # whatever is left of this cluster, by PID
            pids = self._members(raylets)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for process in self.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if not pids:
                break
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False


def _cmdline(pid) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _ppid(pid) -> int:
    """The parent's PID; -1 for a process that has gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _pids():
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
