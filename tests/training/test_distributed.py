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


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


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
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [
        subprocess.Popen([sys.executable, HELPER, "worker", str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
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
