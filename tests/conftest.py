"""Shared fixtures. torch/torchvision are imported before anything imports TensorFlow: the other order
segfaults with torch 2.14 (see shared/reference/environment.md)."""

import os
import threading

import torch  # noqa: F401  (import order matters)
import torchvision  # noqa: F401

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


@pytest.fixture
def record_heap_releases(monkeypatch):
    """`record(period_s)` -> a list that gets, for each later `runtime.release_freed_heap` call, the name of
    the thread that made it; the release is turned on (as `runtime.configure()` does) and
    `releasing_freed_heap` then releases every `period_s` seconds."""
    from video_swin import runtime

    def record(period_s):
        calls = []
        monkeypatch.setitem(runtime._state, "release_freed_heap", True)
        monkeypatch.setattr(runtime, "release_freed_heap", lambda: calls.append(threading.current_thread().name))
        monkeypatch.setattr(runtime, "FREED_HEAP_RELEASE_PERIOD_S", period_s)
        return calls

    return record
