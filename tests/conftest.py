"""Shared fixtures. torch/torchvision are imported before anything imports TensorFlow: the other order
segfaults with torch 2.14 (see shared/reference/environment.md).

Parity is proven on the CPU in float32. On a GPU host the suite stays there: no GPU is visible to this
process or to the processes tests start (the Keras backends' subprocesses, the CLI), unless you set
CUDA_VISIBLE_DEVICES yourself; and TF32 is off for every library (NVIDIA_TF32_OVERRIDE=0, and torch's
own switches in tests/reference.py), because TF32 matmuls and convolutions keep 10 mantissa bits and would
break the 1e-5 parity tolerance."""

import os
import threading

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import torch  # noqa: E402,F401  (import order matters)
import torchvision  # noqa: E402,F401

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests import reference  # noqa: E402


@pytest.fixture(scope="session")
def tiny_reference():
    """torchvision swin3d_t with every tensor randomised (seed 0)."""
    return reference.randomized_reference("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoints(tiny_reference, tmp_path_factory):
    """The tiny reference saved in the torchvision and official layouts (.pth and .safetensors)."""
    return reference.save_checkpoints(tiny_reference, tmp_path_factory.mktemp("tiny_ckpt"))


class HeapReleases(list):
    """The names of the threads that called `runtime.release_freed_heap`, in order; `wait_for(n)` blocks
    until there are n (no sleeping and polling)."""

    def __init__(self):
        super().__init__()
        self._changed = threading.Condition()

    def record(self):
        with self._changed:
            self.append(threading.current_thread().name)
            self._changed.notify_all()

    def wait_for(self, count, timeout=60.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self) >= count, timeout)


@pytest.fixture
def record_heap_releases(monkeypatch):
    """`record(period_s)` -> a `HeapReleases` list that gets, for each later `runtime.release_freed_heap`
    call, the name of the thread that made it; the release is turned on (as `runtime.configure()` does)
    and `releasing_freed_heap` then releases every `period_s` seconds."""
    from video_swin import runtime

    def record(period_s):
        calls = HeapReleases()
        monkeypatch.setitem(runtime._state, "release_freed_heap", True)
        monkeypatch.setattr(runtime, "release_freed_heap", calls.record)
        monkeypatch.setattr(runtime, "FREED_HEAP_RELEASE_PERIOD_S", period_s)
        return calls

    return record
