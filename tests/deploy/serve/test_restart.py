"""`kill -9` of the service in the middle of an upload, then a restart on the same temporary folder: the
new process removes what the dead one left and serves again."""

import os
import signal

import httpx

from tests.deploy.serve.client import RawRequest, multipart, wait_for
from tests.deploy.serve.conftest import PRESET, SERVER_ENV, assert_same_answer
from video_swin.deploy.serve.process import ServerProcess

KEY = "restart-key"


def test_kill_9_mid_upload_then_restart_serves_and_leaves_no_file(tmp_path, clips, offline):
    tmp_dir = tmp_path / "tmp"
    args = ("--tmp-dir", tmp_dir, "--api-key", KEY)
    first = ServerProcess(PRESET, *args, env=SERVER_ENV, log_dir=tmp_path / "logs").start()
    try:
        body = multipart(clips["good"]["page.mp4"].read_bytes())
        request = RawRequest(first.url, "/v1/classify", {"Authorization": f"Bearer {KEY}"})
        request.send_headers(content_length=len(body))
        request.send(body[: len(body) // 2])
        left = wait_for(lambda: [p for p in tmp_dir.rglob("upload.mp4") if p.stat().st_size > 0], what="the upload on disk")
        dead_folder = left[0].parent.parent
        assert dead_folder.name.startswith(f"serve-{first.pid}-")
        os.kill(first.pid, signal.SIGKILL)
        assert first.process.wait(60) == -signal.SIGKILL
        request.close()
        assert left[0].exists()  # nobody could clean up: the process is gone
    finally:
        first.kill()

    with ServerProcess(PRESET, *args, env=SERVER_ENV, log_dir=tmp_path / "logs") as second:
        assert not dead_folder.exists()
        assert [p.name for p in tmp_dir.iterdir()] == [f"serve-{second.pid}-{p.name.rsplit('-', 1)[1]}" for p in tmp_dir.iterdir()]
        with open(clips["good"]["moving_left.mp4"], "rb") as f:
            response = httpx.post(f"{second.url}/v1/classify", files={"file": ("moving_left.mp4", f)},
                                  headers={"X-API-Key": KEY}, timeout=300)
        assert response.status_code == 200, response.text
        assert_same_answer(response.json(), offline["moving_left.mp4"])
        assert [p for p in tmp_dir.rglob("*") if p.is_file()] == []
    # uvicorn shuts down on SIGTERM, then ends by that signal (-15); the shutdown removed the folders
    assert second.process.returncode == -signal.SIGTERM and "Application shutdown complete" in second.log()
    assert not tmp_dir.exists()  # the last server out removes the empty root
