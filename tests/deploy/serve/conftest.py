"""The service as a real process on 127.0.0.1, the clips it is asked about, and what `video-swin classify`
says about the same files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.data.test_video import write_audio_only
from video_swin.data import synthetic
from video_swin.deploy.serve.process import ServerProcess

PRESET = "synthetic-motion"
# The service's environment: nothing fetched, no API key unless a test gives one.
SERVER_ENV = {"VIDEO_SWIN_OFFLINE": "1", "VIDEO_SWIN_API_KEY": ""}
CLASSES = ("moving_left", "moving_right", "rotating_clockwise", "growing", "shrinking")


@pytest.fixture(scope="package")
def clips(tmp_path_factory):
    """Fresh synthetic clips (names -> paths), one of them 256x256 for the page, and files that are not
    videos."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(20261204)
    paths = {}
    for label in CLASSES:
        paths[f"{label}.mp4"] = synthetic.write_video(folder / f"{label}.mp4", synthetic.render_clip(label, rng))
    big = synthetic.render_clip("rotating_anticlockwise", rng).repeat(4, axis=1).repeat(4, axis=2)
    paths["page.mp4"] = synthetic.write_video(folder / "page.mp4", big)
    bad = folder / "bad"
    bad.mkdir()
    (bad / "text.mp4").write_text("not a video at all\n")
    (bad / "empty.mp4").write_bytes(b"")
    data = paths["growing.mp4"].read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 4])
    write_audio_only(bad / "audio_only.m4a")
    return {"good": paths, "bad": {p.name: p for p in sorted(bad.iterdir())}}


@pytest.fixture(scope="package")
def offline(clips):
    """`video-swin classify --json` on the good clips: {file name: its record with all classes}."""
    files = [str(p) for p in clips["good"].values()]
    result = subprocess.run([sys.executable, "-m", "video_swin.cli", "classify", *files, "--preset", PRESET,
                             "--json", "--top-k", "8"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **SERVER_ENV})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {record["file"].rsplit("/", 1)[-1]: record for record in records}


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    """The service with its defaults but a temporary folder of its own."""
    root = tmp_path_factory.mktemp("serve")
    with ServerProcess(PRESET, "--max-batch", "8", "--queue-size", "16", "--tmp-dir", root / "tmp", env=SERVER_ENV,
                       log_dir=root / "logs") as process:
        process.tmp_dir = root / "tmp"
        yield process


def assert_same_answer(answer, offline_record, top_k=5):
    """The service's answer is the command line's: same labels in the same order, probabilities within
    1e-6, and every key the command line prints."""
    expected = offline_record["top_k"][:top_k]
    assert [r["label"] for r in answer["top_k"]] == [r["label"] for r in expected]
    np.testing.assert_allclose([r["probability"] for r in answer["top_k"]], [r["probability"] for r in expected],
                               rtol=0, atol=1e-6)
    assert set(offline_record) <= set(answer) and set(offline_record["timings"]) <= set(answer["timings"])
