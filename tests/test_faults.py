"""Faults: `kill -9` at random moments of `convert`, `export`, `extract-tfrecords` and `train`, and a full
disk (RLIMIT_FSIZE) under each.

After every kill, what sits under a final name is either absent or complete: equal to what the same
command wrote when it was not interrupted (the records of TFRecord shards, weights of presets, outputs of
a TFLite model); the next complete run leaves no temporary behind. `train` is killed on a fresh folder,
then the same command finishes it: its final weights equal those of an uninterrupted run with the same
seed within 1e-6. Under a full disk each command fails with one error line and leaves no file behind.

`make test` kills each command at `VIDEO_SWIN_FAULT_MOMENTS` (default 1: CI's time) moments; the `slow`
variant at 20. For convert, export and extract-tfrecords the moments are drawn (seeded) uniformly over the
uninterrupted run's duration: some fall during start-up, some while computing, some while writing; a
run that finishes before its moment counts as such. For train they are drawn in training (after a random
checkpoint, plus a random part of a step), where the machine's load cannot push them into the start-up.
With `VIDEO_SWIN_RELIABILITY_RESULTS` set, what each kill found is recorded (tests/reliability.py).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests import reference, reliability
from video_swin.zoo.synthetic_motion import PRESET_DIR

DEFAULT_MOMENTS = int(os.environ.get("VIDEO_SWIN_FAULT_MOMENTS", 1))
TRAIN_ATOL = 1e-6


def _cli(*args):
    return [sys.executable, "-m", "video_swin.cli", *map(str, args)]


def _timed_run(command, timeout=900):
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return time.monotonic() - start


def _kill_at(command, moment):
    """Runs `command` and sends SIGKILL to its process group `moment` seconds after the start. Returns
    True if it was killed, False if it had finished (successfully) before."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=moment)
        assert proc.returncode == 0, err.decode()[-3000:]
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return True


def _moments(duration, count, seed):
    return np.random.default_rng(seed).uniform(0, duration, count).tolist()


def _h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _same_preset(folder, want):
    """A preset folder equal to `want` (config, class names, every weight)."""
    assert json.loads((folder / "config.json").read_text()) == json.loads((want / "config.json").read_text())
    json.loads((folder / "metadata.json").read_text())
    got, expected = _h5_arrays(folder / "model.weights.h5"), _h5_arrays(want / "model.weights.h5")
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def _final_names(folder):
    """What a user would take for output: the entries not hidden (temporaries start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


# ---------------------------------------------------------------------------- the four commands


def _convert_case(tmp_path):
    checkpoint = reference.save_checkpoints(reference.randomized_small_reference(), tmp_path)["torchvision_pth"]
    want = tmp_path / "uninterrupted" / "preset"  # the same name: a preset's config holds its folder's name
    out = tmp_path / "preset"
    command = _cli("convert", checkpoint, out, "--overwrite")
    duration = _timed_run(_cli("convert", checkpoint, want))

    def check():
        if out.exists():
            _same_preset(out, want)
            return "complete"
        return "absent"

    return command, duration, check, out


def _export_case(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    want_path = tmp_path / "reference.tflite"
    out = tmp_path / "model.tflite"
    command = _cli("export", PRESET_DIR, out, "--format", "tflite", "--overwrite")
    duration = _timed_run(_cli("export", PRESET_DIR, want_path, "--format", "tflite"))
    x = np.random.default_rng(0).standard_normal((1, 16, 64, 64, 3)).astype("float32")

    def outputs(path):
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    want = outputs(want_path)

    def check():
        if out.exists():
            np.testing.assert_array_equal(outputs(out), want)
            return "complete"
        return "absent"

    return command, duration, check, out


def _records(path):
    """The SequenceExamples of a TFRecord file (a truncated file raises); compared as messages, since the
    order of map fields in their bytes may differ between processes."""
    import tensorflow as tf

    return [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def _extract_case(tmp_path, data):
    want = tmp_path / "uninterrupted" / "tfrecords"
    out = tmp_path / "tfrecords"
    args = ("--data", data, "--short-side", 32, "--shards", 3, "--workers", 1)
    command = _cli("extract-tfrecords", *args, "--out", out, "--overwrite")
    duration = _timed_run(_cli("extract-tfrecords", *args, "--out", want))

    def check():
        names = _final_names(out)
        for name in names:  # every visible file is the whole of what it should be
            if name.endswith(".tfrecord"):
                assert _records(out / name) == _records(want / name), name
            elif name.endswith(".json"):
                assert json.loads((out / name).read_text()) == json.loads((want / name).read_text()), name
            else:
                assert (out / name).read_bytes() == (want / name).read_bytes(), name
        return "complete" if "manifest.json" in names else ("shards without manifest" if names else "absent")

    return command, duration, check, out


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def _kill_repeatedly(name, case, count, seed):
    """Kills `count` runs of the command on one output path, checking it after each; then lets it run to
    the end: the output is complete and the temporaries the kills left are gone."""
    command, duration, check, out = case
    found, killed, left = {}, 0, 0
    for moment in _moments(duration, count, seed):
        killed += _kill_at(command, moment)
        outcome = check()
        found[outcome] = found.get(outcome, 0) + 1
        left = max(left, len(_hidden(out.parent)) + len(_hidden(out)))
    _timed_run(command)
    assert check() == "complete"
    assert not _hidden(out.parent) and not _hidden(out), (_hidden(out.parent), _hidden(out))
    return {"command": name, "moments": count, "killed": killed, "finished_before_the_kill": count - killed,
            "uninterrupted_s": round(duration, 1), "outcomes": found, "most_temporaries_left_by_kills": left,
            "temporaries_after_a_complete_run": 0}


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    from video_swin.data import synthetic

    root = tmp_path_factory.mktemp("videos")
    synthetic.make_synthetic(root, clips=16, seed=5, frames=12, size=32, workers=1)
    return root


def _fault_run(tmp_path, video_data, moments, name):
    for sub in ("convert", "export", "extract", "train"):
        (tmp_path / sub).mkdir()
    results = [
        _kill_repeatedly("convert", _convert_case(tmp_path / "convert"), moments, seed=1),
        _kill_repeatedly("export", _export_case(tmp_path / "export"), moments, seed=2),
        _kill_repeatedly("extract-tfrecords", _extract_case(tmp_path / "extract", video_data), moments, seed=3),
        _train_kills(tmp_path / "train", video_data, moments, seed=4),
    ]
    reliability.record(name, {"commands": results})


def test_kill_9_leaves_nothing_partial(tmp_path, video_data):
    _fault_run(tmp_path, video_data, DEFAULT_MOMENTS, "faults_kill")


@pytest.mark.slow
def test_kill_9_at_20_moments_each(tmp_path, video_data):
    _fault_run(tmp_path, video_data, int(os.environ.get("VIDEO_SWIN_FAULT_MOMENTS", 20)), "faults_kill_slow")


# ---------------------------------------------------------------------------- train: kill, resume, compare


def _train_args(data, out):
    return ("train", "--data", data, "--out", out, "--arch", "test-nano", "--epochs", 2, "--batch-size", 4,
            "--clip-len", 8, "--frame-interval", 1, "--short-side", 32, "--crop-size", 32, "--crop-scale", 0.6, 1,
            "--no-flip", "--test-views", "1x1", "--mean", 127.5, 127.5, 127.5, "--std", 64, 64, 64,
            "--warmup-epochs", 0.5, "--lr", 2e-3, "--head-dropout", 0, "--workers", 1, "--val-split", 0,
            "--checkpoint-every", 1, "--seed", 7)


def _check_training_folder(out):
    """Every visible checkpoint loads, the pointer names one of them, the history and the preset (when
    there) are whole."""
    folder = out / "checkpoints"
    for checkpoint in folder.glob("ckpt-*.npz") if folder.exists() else []:
        with np.load(checkpoint) as z:
            json.loads(bytes(z["meta"]).decode())
    if (folder / "checkpoint.json").exists():
        pointer = json.loads((folder / "checkpoint.json").read_text())
        assert (folder / pointer["latest"]).is_file()
    for name in ("history.json",):
        if (out / name).exists():
            json.loads((out / name).read_text())
    if (out / "preset").exists():
        _h5_arrays(out / "preset" / "model.weights.h5")
        json.loads((out / "preset" / "config.json").read_text())


def _step(pointer):
    try:
        return json.loads(pointer.read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def _timed_training(command, pointer):
    """An uninterrupted run: (seconds to the first checkpoint, seconds in all)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start, first = time.monotonic(), None
    while proc.poll() is None:
        if first is None and _step(pointer) >= 1:
            first = time.monotonic() - start
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    total = time.monotonic() - start
    return (total if first is None else first), total


def _kill_during_training(command, pointer, step, delay, timeout=600):
    """Runs `command` and sends SIGKILL `delay` seconds after the checkpoint pointer reports `step`: a
    moment in training, whatever the machine's load does to the start-up. Returns whether it was killed
    (False: the run ended first)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and _step(pointer) < step:
        time.sleep(0.01)
    end = time.monotonic() + delay
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.01)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


STEPS = 8  # 2 epochs of 16 clips in batches of 4


def _train_kills(tmp_path, data, count, seed):
    """Episodes on fresh output folders: one kill, then the same command to the end, compared with an
    uninterrupted run. The moments are random in training: after checkpoint k (uniform in 1..8, the 8th
    being followed by the final preset's writing) plus a uniform fraction of a step's duration; the
    first episode kills as checkpoint 3 appears."""
    want = tmp_path / "uninterrupted"
    first, total = _timed_training(_cli(*_train_args(data, want)), want / "checkpoints" / "checkpoint.json")
    step_s = (total - first) / (STEPS - 1)
    expected = _h5_arrays(want / "preset" / "model.weights.h5")
    rng = np.random.default_rng(seed)
    moments = [(3, 0.0)] + [(int(rng.integers(1, STEPS + 1)), float(rng.uniform(0, step_s))) for _ in range(count - 1)]
    episodes = []
    for i, (step, delay) in enumerate(moments[:count]):
        out = tmp_path / f"killed_{i}"
        command = _cli(*_train_args(data, out))
        pointer = out / "checkpoints" / "checkpoint.json"
        killed = _kill_during_training(command, pointer, step, delay)
        _check_training_folder(out)
        resumed_from = _step(pointer)
        _timed_run(command)  # the same command finishes the run (or finds it finished)
        assert not _hidden(out) and not _hidden(out / "checkpoints"), (_hidden(out), _hidden(out / "checkpoints"))
        got = _h5_arrays(out / "preset" / "model.weights.h5")
        assert sorted(got) == sorted(expected)
        worst = max(float(np.max(np.abs(got[k].astype("float64") - expected[k]))) if got[k].size else 0.0
                    for k in expected)
        assert worst <= TRAIN_ATOL, f"final weights differ by {worst} after a kill at step {resumed_from}"
        assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
        episodes.append({"killed": killed, "after_checkpoint": step, "delay_s": round(delay, 2),
                         "resumed_from_step": resumed_from, "max_abs_difference": worst})
        shutil.rmtree(out)
    assert not episodes or episodes[0]["killed"], "the kill at checkpoint 3 did not happen"
    return {"command": "train", "moments": count, "killed": sum(e["killed"] for e in episodes),
            "finished_before_the_kill": sum(not e["killed"] for e in episodes), "uninterrupted_s": round(total, 1),
            "resumed_from_steps": sorted(e["resumed_from_step"] for e in episodes if e["killed"]),
            "final_weights_max_abs_difference": max((e["max_abs_difference"] for e in episodes), default=None),
            "tolerance": TRAIN_ATOL, "steps": STEPS, "episodes": episodes}


# ---------------------------------------------------------------------------- a full disk


def _full_disk(limit_bytes):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


def _full_disk_cases(tmp_path, data):
    checkpoint = reference.save_checkpoints(reference.randomized_small_reference(), tmp_path)["torchvision_pth"]
    return {
        "convert": (_cli("convert", checkpoint, tmp_path / "preset"), tmp_path / "preset"),
        "export": (_cli("export", PRESET_DIR, tmp_path / "model.tflite", "--format", "tflite"), tmp_path / "model.tflite"),
        "extract-tfrecords": (_cli("extract-tfrecords", "--data", data, "--out", tmp_path / "tfr", "--short-side", 32,
                                   "--workers", 1), tmp_path / "tfr"),
        "train": (_cli(*_train_args(data, tmp_path / "run")), tmp_path / "run"),
    }


@pytest.mark.parametrize("command", ["convert", "export", "extract-tfrecords", "train"])
def test_full_disk_gives_one_line_and_no_partial_file(command, tmp_path, video_data):
    argv, out = _full_disk_cases(tmp_path, video_data)[command]
    before = {p.name for p in tmp_path.iterdir()}
    # 16 KiB: enough for the small files a command may write first (labels, a pointer), not for its output
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, preexec_fn=_full_disk(16 << 10))
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("video-swin: error: ")]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]  # progress lines may come first
    assert "Traceback" not in result.stderr
    assert "File too large" in errors[0], errors[0]
    leftovers = {p.name for p in tmp_path.iterdir()} - before
    if command in ("extract-tfrecords", "train"):  # these make their output folder first: it holds no file
        assert leftovers <= {out.name} and not [p for p in out.rglob("*") if p.is_file()], list(out.rglob("*"))
    else:
        assert not out.exists() and not leftovers, leftovers
