"""The service's temporary folders: private, one per process, the folders of dead servers removed at start,
and client file names that never become paths."""

import os
import subprocess

import pytest

from video_swin.deploy.serve import uploads


def _dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_new_server_removes_the_folders_of_dead_servers_only(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    me, started = os.getpid(), uploads.process_start_time(os.getpid())
    dead = root / f"serve-{_dead_pid()}-123"
    reused = root / f"serve-{me}-{started + 1}"  # this process id, another process's start time
    alive = root / f"serve-{me}-{started}"
    unrelated = root / "notes"
    for folder in (dead, reused, alive, unrelated):
        (folder / "request").mkdir(parents=True)
        (folder / "request" / "upload.mp4").write_bytes(b"x")
    folder = uploads.UploadFolder(root)
    assert sorted(folder.removed_stale) == sorted([dead.name, reused.name])
    assert not dead.exists() and not reused.exists() and alive.exists() and unrelated.exists()
    assert folder.path == alive  # this process's own folder, kept and reused
    request = folder.request_folder()
    assert request.parent == folder.path and oct(request.stat().st_mode & 0o777) == "0o700"
    folder.close()
    assert not alive.exists() and root.exists()  # the root is shared: left while it holds anything


def test_the_root_is_private_and_removed_when_empty(tmp_path):
    root = tmp_path / "fresh"
    folder = uploads.UploadFolder(root)
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    folder.close()
    assert not root.exists()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(uploads.TempFolderError, match="not a plain folder"):
        uploads.UploadFolder(tmp_path / "link")


@pytest.mark.parametrize("raw, name", [
    ("clip.mp4", "clip.mp4"), ("../../etc/passwd", "passwd"), ("..\\..\\x.mp4", "x.mp4"), ("/abs/path/v.webm", "v.webm"),
    ("..", "upload"), ("", "upload"), (None, "upload"), ("a\nb\x00.mp4", "ab.mp4"),
])
def test_client_file_names_keep_only_their_last_component(raw, name):
    assert uploads.client_file_name(raw) == name


def test_only_known_video_extensions_reach_the_disk():
    assert uploads.upload_suffix("clip.MP4") == ".mp4" and uploads.upload_suffix("x.sh") == ""
    assert uploads.upload_suffix("noext") == ""
