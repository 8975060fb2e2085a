"""`video_swin.runtime`: each process-wide setting does what its table says, only when `configure()` is
called, and keeps the user's own choice; importing the package changes nothing."""

import contextlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import keras
from tests import reference
from video_swin import runtime
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier
from video_swin.runtime import MEMORY_MINIMISING_XLA_SCHEDULE

SMALL_ARCH = dict(reference.SMALL_ARCHITECTURE, drop_path_rate=0.0)


def _classifier(seed=0):
    """Built from its own seed: the weights do not depend on which tests ran before."""
    keras.utils.set_random_seed(seed)
    return VideoSwinClassifier(VideoSwinBackbone(**SMALL_ARCH), num_classes=5)


def _clip(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(tuple(shape) + (3,)).astype("float32")


def _compile(model, **kwargs):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs
    )
    return model


def test_importing_the_package_and_building_a_model_change_no_environment_variable():
    """In a fresh process: import every subpackage, build and run a model; the environment stays as it was
    (the settings come only from `runtime.configure()`). The third-party libraries are imported before the
    snapshot (OpenCV edits LD_LIBRARY_PATH on import)."""
    code = textwrap.dedent(
        f"""
        import os, importlib
        import av, cv2, h5py, keras, tensorflow
        before = dict(os.environ)
        import video_swin
        for name in ("models", "checkpoints", "data", "inference", "training", "deploy", "zoo", "checks", "cli"):
            importlib.import_module("video_swin." + name)
        import numpy as np
        from video_swin.models import VideoSwinBackbone, VideoSwinClassifier
        model = VideoSwinClassifier(VideoSwinBackbone(**{SMALL_ARCH!r}), num_classes=5)
        model.predict_on_batch(np.zeros((1, 4, 12, 12, 3), "float32"))
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        print("changed:", changed)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "changed: []"


def test_configure_does_nothing_when_turned_off(monkeypatch):
    monkeypatch.setenv("VIDEO_SWIN_RUNTIME", "off")
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    runtime.configure()
    assert "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ and os.environ["XLA_FLAGS"] == ""


def test_the_heap_is_released_only_when_configured(monkeypatch):
    """Without `configure()` (or with `release_freed_heap=False`) neither the release nor its thread runs."""
    calls = []
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: calls.append(name))
    monkeypatch.setitem(runtime._state, "release_freed_heap", False)
    runtime.release_freed_heap()
    with runtime.releasing_freed_heap():
        assert "release-freed-heap" not in [thread.name for thread in threading.enumerate()]
    assert calls == []
    runtime.configure(release_freed_heap=True)
    runtime.release_freed_heap()
    assert calls == ["libc.so.6"]


def test_memory_minimising_xla_schedule_is_added_once_and_a_users_setting_is_kept(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_hlo_as_text")
    for _ in range(2):
        runtime.prefer_memory_minimising_xla_schedule()
        assert os.environ["XLA_FLAGS"] == "--xla_dump_hlo_as_text " + MEMORY_MINIMISING_XLA_SCHEDULE
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=true")
    runtime.prefer_memory_minimising_xla_schedule()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    monkeypatch.delenv("XLA_FLAGS")
    runtime.prefer_memory_minimising_xla_schedule()
    assert os.environ["XLA_FLAGS"] == MEMORY_MINIMISING_XLA_SCHEDULE


def test_predict_compiles_with_the_memory_minimising_schedule_after_configure(tmp_path):
    """In a fresh process (XLA reads its flags at its first compilation), `predict_on_batch` after
    `runtime.configure()` compiles with the schedule: XLA's dump of the options it compiled with says so."""
    code = textwrap.dedent(
        f"""
        import os
        os.environ["XLA_FLAGS"] = "--xla_dump_to={tmp_path}"
        import numpy as np
        from video_swin import runtime
        runtime.configure()
        from video_swin.models import VideoSwinBackbone, VideoSwinClassifier
        model = VideoSwinClassifier(VideoSwinBackbone(**{SMALL_ARCH!r}), num_classes=5)
        model.predict_on_batch(np.zeros((1, 4, 12, 12, 3), "float32"))
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    options = [p.read_text() for p in tmp_path.glob("*.debug_options")]
    assert options and all("xla_cpu_enable_concurrency_optimized_scheduler: false" in o for o in options)


@pytest.mark.parametrize(
    "configure,user_setting,expected",
    [(True, None, "pooled true"), (True, "false", "default false"), (False, None, "default None")],
    ids=["configure", "configure-keeps-the-users-false", "without-configure"],
)
def test_configure_selects_tensorflows_pooling_cpu_allocator_unless_the_user_chose(configure, user_setting, expected):
    """In a fresh process: TensorFlow reports allocator statistics for the CPU only with a pooling (BFC)
    allocator; the process prints which it got and the variable's value.

    oneDNN is off in these processes, in both CI passes: with oneDNN on, TensorFlow's CPU device pools
    whatever TF_CPU_ALLOCATOR_USE_BFC says (measured: "pooled" with the variable at "false", and without
    `configure()`), so only a oneDNN-off process shows what the setting does; that is where it matters
    (with oneDNN on the setting changes nothing, which is harmless). The third case, without
    `configure()`, shows that the probe tells the two allocators apart."""
    code = textwrap.dedent(
        f"""
        import os
        if {configure!r}:
            from video_swin import runtime
            runtime.configure()
        import tensorflow as tf
        tf.zeros((4, 4))
        try:
            tf.config.experimental.get_memory_info("CPU:0")
            print("pooled", os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"))
        except ValueError:
            print("default", os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPU_ALLOCATOR_USE_BFC", "VIDEO_SWIN_RUNTIME")}
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    if user_setting is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = user_setting
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.stdout.strip().splitlines()[-1] == expected


def test_predict_releases_the_freed_heap_after_each_compilation(record_heap_releases):
    release_freed_heap = runtime.release_freed_heap
    calls = record_heap_releases(0.001)
    model = _classifier()
    counts = []
    for shape in [(1, 4, 12, 12), (1, 4, 12, 12), (1, 6, 12, 12)]:
        model.predict_on_batch(_clip(shape))
        counts.append(len(calls))
    assert 0 < counts[0] == counts[1] < counts[2]  # only when a new input shape was traced and compiled
    # after the compile, on the caller's thread; not during it: that cost the first call more than it saved
    assert set(calls) == {threading.current_thread().name}
    model.predict(_clip((3, 4, 16, 16)), batch_size=3, verbose=0)  # Keras' batched predict as well
    assert len(calls) > counts[2]
    assert release_freed_heap() is None  # the real one (patched out above) runs: a no-op without glibc




def test_releasing_freed_heap_releases_on_a_thread_while_the_block_runs_then_once_after(record_heap_releases):
    calls = record_heap_releases(0.001)
    for fails in (False, True):
        del calls[:]
        with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
            with runtime.releasing_freed_heap():
                assert calls.wait_for(3)  # the thread releases repeatedly while the block runs
                if fails:
                    raise RuntimeError("the block failed")
        # The thread is gone when the block is left (so nothing releases later), and the caller's thread
        # released once more, last.
        assert "release-freed-heap" not in [thread.name for thread in threading.enumerate()]
        assert len(calls) >= 4 and set(calls[:-1]) == {"release-freed-heap"}
        assert calls[-1] == threading.current_thread().name


def test_training_releases_the_freed_heap_during_and_after_the_first_step_only(record_heap_releases):
    calls = record_heap_releases(3600)  # only the release after the block
    model = _compile(_classifier(), jit_compile=False)
    x, y = _clip((2, 4, 12, 12), 6), np.array([1, 2])
    for _ in range(3):
        model.train_on_batch(x, y)
    assert len(calls) == 1  # the first step traced and compiled the train function
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.train_on_batch(x, y)  # compiling again makes a new train function
    assert len(calls) == 2
    _compile(_classifier(), jit_compile=False).fit(x, y, epochs=2, verbose=0)  # fit's steps as well
    assert len(calls) == 3
    calls = record_heap_releases(0.001)
    model = _compile(_classifier(), jit_compile=False)
    model.train_on_batch(x, y)
    assert calls.count("release-freed-heap") > 0  # while the first step traced and compiled
    count = len(calls)
    model.train_on_batch(x, y)
    assert len(calls) == count


