"""The same training code under tf.distribute: one optimisation step on 2 replicas with global batch 2B
gives the weights of one single-device step on the same 2B clips (max abs error <= 1e-5).

TensorFlow's devices (two logical CPUs) and TF_CONFIG must be set before it initialises, so every run is
a fresh process (tests/training/distributed_helper.py)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HELPER = str(ROOT / "tests" / "training" / "distributed_helper.py")


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env.pop("TF_CONFIG", None) if "TF_CONFIG" not in extra else None
    return env


def _last_json(text):
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
BIND_FAILURES = ("Address already in use", "Could not start gRPC server", "Failed to add port")


def _ports_nobody_is_handed(n, rng):
    """n ports that are free now and lie outside the kernel's ephemeral range.

    TensorFlow's gRPC server binds the port TF_CONFIG names itself (on every interface, with SO_REUSEPORT
    off), so the test cannot hold the port for it. Asking the kernel for a free port (bind to 0, close,
    hand it over) races with every process that gets an ephemeral port in between; a port outside that
    range is never handed out automatically, so only a process asking for that very number could take
    it before the worker binds it, and that case is retried (`_run_workers`)."""
    try:
        low, high = map(int, EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    pool = [p for p in range(10000, 65536) if not low <= p <= high]
    ports = []
    while len(ports) < n:
        port = int(rng.choice(pool))
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue  # in use now
        if port not in ports:
            ports.append(port)
    return ports


def _run_workers(tmp_path, attempts=3):
    """Both MultiWorkerMirroredStrategy workers to completion: [(returncode, stdout, stderr)]. A worker
    that could not bind its port (another process asked for the same number) means new ports."""
    rng = np.random.default_rng()
    for _ in range(attempts):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in _ports_nobody_is_handed(2, rng)]}
        procs = [
            subprocess.Popen([sys.executable, HELPER, "worker", str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
            for i in range(2)
        ]
        results = [(p, *p.communicate(timeout=600)) for p in procs]
        if not any(p.returncode and any(m in err for m in BIND_FAILURES) for p, _, err in results):
            return [(p.returncode, out, err) for p, out, err in results]
    raise AssertionError(f"the workers could not bind their ports in {attempts} attempts: {results[0][2][-2000:]}")


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    """One process with two logical CPUs: the single-device step (saved as the reference for the
    multi-worker test too) and the MirroredStrategy step."""
    out = tmp_path_factory.mktemp("mirrored")
    run = subprocess.run([sys.executable, HELPER, "mirrored", str(out)], capture_output=True, text=True,
                         env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, _last_json(run.stdout)


def test_mirrored_strategy_on_two_logical_cpus(mirrored_run):
    _, result = mirrored_run
    assert result["replicas"] == 2 and result["step"] == 1
    print(f"mirrored (2 replicas): max abs error vs single device {result['max_abs_error']:.3g}")
    assert result["max_abs_error"] <= 1e-5, result


def test_multi_worker_mirrored_strategy_two_processes(tmp_path, mirrored_run):
    for returncode, out, err in _run_workers(tmp_path):
        assert returncode == 0, err[-3000:]
        assert _last_json(out)["replicas"] == 2
    with np.load(mirrored_run[0] / "single.npz") as z:
        single = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    for i in range(2):
        with np.load(tmp_path / f"worker{i}.npz") as z:
            worker = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
        err = max(float(np.abs(a - b).max()) for a, b in zip(single, worker))
        print(f"worker {i}: max abs error vs single device {err:.3g}")
        assert err <= 1e-5, (i, err)
    assert (tmp_path / "multiworker" / "checkpoints" / "checkpoint.json").is_file()  # written by the chief
