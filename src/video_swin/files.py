"""Atomic file output: nothing half-written ever sits under a final name.

Every writer of the package (presets, exports, training checkpoints, TFRecords, videos, plots) goes
through these: the output is written under a temporary name in the same folder and renamed into place
only when complete, so a crash, `kill -9` or a full disk leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path


def replace_into_place(new, out):
    """Renames `new` (a file or folder) to `out`. A file replaces a file in one step; an existing folder
    (which no rename can replace) is moved aside first and deleted only once `new` is in place."""
    new, out = Path(new), Path(out)
    if not out.exists() or (new.is_file() and out.is_file()):
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
    os.replace(out, old / "x")
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


# What `atomic_path` and `replace_into_place` leave when their process is killed: `.NAME.tmp-PID-XXXXXXXX`
# and `.NAME.old-PID-XXXXXXXX` (the last part is tempfile's).
_TEMPORARY = re.compile(r"^\..+\.(?:tmp|old)-(\d+)-[a-z0-9_]{8}$")


def remove_stale_temporaries(folder):
    """Deletes the temporaries in `folder` whose writing process is gone (killed before it could clean
    up); those of running processes stay."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and not _process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_output_path(out, overwrite=True):
    """Raises one clear line if `out` cannot be written: it exists (and `overwrite` is false), or a folder
    it would go into is a file. Writers call it before their work, so a long export does not end there."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite / --overwrite to replace it)")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot write {out}: {parent} is a file, not a folder")
            break


@contextlib.contextmanager
def atomic_path(out, overwrite=True):
    """Yields a temporary path beside `out` (not yet created: write a file or a folder there) that becomes
    `out` only if the block succeeds and wrote it; on failure nothing is left."""
    out = Path(out)
    check_output_path(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp = tmp_root / out.name
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written for {out}")
        replace_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out_dir, overwrite=False):
    """Yields a new temporary folder that becomes `out_dir` only if the block succeeds."""
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        tmp.mkdir()
        yield tmp


def write_bytes(path, data: bytes):
    """Writes `data` to `path` and flushes it to disk (inside `atomic_path`, before the rename). A failed
    write (a full disk, a file size limit) names the file it was for."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.filename is not None:
            raise
        final = Path(path).name  # inside atomic_path the temporary has the final name in a hidden folder
        raise OSError(exc.errno, f"cannot write {final} ({len(data):,} bytes): {exc.strerror}") from None


def sync_to_disk(path):
    """Flushes a file that a library wrote and closed (without fsync) to disk: call it inside `atomic_path`,
    before the rename, so the renamed file is never empty after a power cut."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_bytes(path, data: bytes):
    """Writes `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        write_bytes(tmp, data)


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_of(path, chunk=1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
