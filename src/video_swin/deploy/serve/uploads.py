"""Where uploads wait for the decoder, and how they leave: a folder per server process, a folder per request.

    <root>/serve-<pid>-<start>/<request id>/upload.mp4

The root (`--tmp-dir`, default `video-swin-serve-<uid>` in the system's temporary folder) is private
(0700, owned by the user). Each request's folder is removed when the request ends, whether it was answered,
refused, or abandoned by its client; the process folder is removed at shutdown. A server killed with
`kill -9` cannot remove its folder, so every server removes, when it starts, the folders of server
processes that no longer exist: `<pid>-<start>` names a process by its id and its start time (Linux
/proc), so a process id reused by another program does not keep a dead server's files alive.

Nothing a request sends names a file here: names are made by the server; the client's file name is only
reported back, and only its last component.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

from video_swin.inference.classify import VIDEO_EXTENSIONS

_PROCESS_FOLDER = re.compile(r"serve-(\d+)-(\d+)")


class TempFolderError(OSError):
    """The temporary folder cannot be used safely; one line."""


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / f"video-swin-serve-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), 0 where /proc is not there, None if
    there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _alive_without_proc(pid)
    # The command name (field 2) is in parentheses and may hold spaces; the fields after it are plain.
    return int(data[data.rindex(b")") + 2 :].split()[19])


def _alive_without_proc(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0


def _private_root(root: Path) -> Path:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise TempFolderError(f"temporary folder {root} is not a plain folder (a link?); choose another with --tmp-dir")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise TempFolderError(f"temporary folder {root} belongs to another user; choose another with --tmp-dir")
    if info.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


class UploadFolder:
    """This process's folder under `root`; `request_folder()` makes one folder per request."""

    def __init__(self, root=None):
        self.root = _private_root(Path(root) if root else default_root())
        self.removed_stale = remove_dead_servers_folders(self.root)
        pid = os.getpid()
        started = process_start_time(pid) or 0
        self.path = self.root / f"serve-{pid}-{started}"
        self.path.mkdir(mode=0o700, exist_ok=True)

    def request_folder(self) -> Path:
        folder = self.path / uuid.uuid4().hex
        folder.mkdir(mode=0o700)
        return folder

    def close(self):
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.root.rmdir()  # only when empty: other servers may share the root
        except OSError:
            pass


def remove_dead_servers_folders(root: Path) -> list:
    """Removes `root`'s process folders whose process is gone; returns their names."""
    removed = []
    for entry in root.iterdir():
        match = _PROCESS_FOLDER.fullmatch(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        pid, started = int(match.group(1)), int(match.group(2))
        now = process_start_time(pid)
        if now is None or (started and now and now != started):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def client_file_name(raw) -> str:
    """The last component of the file name a client sent, without control characters, for messages and
    the answer's "file"; never used as a path."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:200]
    return name if name not in ("", ".", "..") else "upload"


def upload_suffix(name: str) -> str:
    """The known video extension of the client's name, or none: FFmpeg finds the format from the bytes, the
    extension only helps it with raw streams."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in VIDEO_EXTENSIONS else ""
