"""Atomic output (`video_swin.files`): what a killed writer leaves is cleaned by the next one, never what
a running writer is making; a file replaces a file in one step."""

import os
import subprocess
import sys

import pytest

from video_swin import files


def _dead_pid():
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_writers_are_removed_and_running_ones_kept(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".model.tflite.tmp-{dead}-abcd_123", tmp_path / f".preset.old-{dead}-zz99yy88"]
    for folder in stale:
        (folder / "x").mkdir(parents=True)
        (folder / "x" / "data").write_bytes(b"partial")
    running = tmp_path / f".other.tmp-{os.getpid()}-abcdefgh"
    running.mkdir()
    unrelated = [tmp_path / ".hidden_config", tmp_path / "notes.tmp-1-abcdefgh"]
    for path in unrelated:
        path.write_text("mine")
    files.atomic_write_text(tmp_path / "out.txt", "done")
    assert (tmp_path / "out.txt").read_text() == "done"
    assert not any(p.exists() for p in stale)
    assert running.is_dir() and all(p.read_text() == "mine" for p in unrelated)


def test_a_file_replaces_a_file_without_a_moment_of_absence(tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    renames = []
    real = os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (renames.append((a, b)), real(a, b))[1])
    files.atomic_write_bytes(out, b"new")
    assert out.read_bytes() == b"new"
    assert len(renames) == 1 and renames[0][1] == out  # no moving aside: `out` always held a whole file


def test_a_folder_replaces_a_folder_and_a_failure_leaves_the_old_one(tmp_path):
    out = tmp_path / "preset"
    with files.atomic_directory(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with files.atomic_directory(out, overwrite=True) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("failed while writing")
    assert (out / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["preset"]
    with files.atomic_directory(out, overwrite=True) as tmp:
        (tmp / "a").write_text("3")
    assert (out / "a").read_text() == "3" and sorted(p.name for p in tmp_path.iterdir()) == ["preset"]


def test_write_errors_name_the_file(tmp_path, monkeypatch):
    real_open = open

    class FullDisk:
        def __init__(self, path, mode):
            self.file = real_open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "open", FullDisk, raising=False)  # the module's `open`, not the builtin
    with pytest.raises(OSError, match=r"cannot write out.bin \(3 bytes\): No space left on device"):
        files.atomic_write_bytes(tmp_path / "out.bin", b"abc")
    assert list(tmp_path.iterdir()) == []
