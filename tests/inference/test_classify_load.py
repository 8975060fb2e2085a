"""Load: many classifications in one process keep its memory flat, and one `VideoClassifier` shared by
threads returns what it returns serially.

The first test runs 300 classifications of a video file with the shipped synthetic-motion preset in a
process of its own and reads its resident memory (VmRSS) after the 10th and the 300th: the growth must
stay within 30 MB. With `VIDEO_SWIN_RELIABILITY_RESULTS` set, the figures are recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests import reliability
from video_swin.data import synthetic
from video_swin.inference.classify import VideoClassifier
from video_swin.zoo.synthetic_motion import PRESET_DIR

CALLS, WARM_UP, MAX_GROWTH_MB = 300, 10, 30

LOAD_SCRIPT = """
import json, sys
from video_swin.inference.classify import VideoClassifier
from video_swin.zoo.synthetic_motion import PRESET_DIR

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

videos, calls, warm_up = sys.argv[1:-2], int(sys.argv[-2]), int(sys.argv[-1])
classifier = VideoClassifier(PRESET_DIR)
samples, first = {}, None
for i in range(1, calls + 1):
    result = classifier(videos[i % len(videos)])
    if first is None:
        first = result.probabilities.tolist()
    if i in (1, warm_up) or i % 50 == 0 or i == calls:
        samples[i] = rss()
same = classifier(videos[1 % len(videos)]).probabilities.tolist() == first
print(json.dumps({"rss": samples, "same_result_at_the_end": same}))
"""


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    paths = []
    for i, label in enumerate(["moving_left", "rotating_clockwise", "growing", "moving_down"]):
        clip = synthetic.render_clip(label, np.random.default_rng(i))
        paths.append(synthetic.write_video(root / f"{label}.mp4", clip))
    return paths


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from Linux's /proc")
def test_300_classifications_keep_memory_flat(videos):
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *map(str, videos), str(CALLS), str(WARM_UP)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    measured = json.loads(out.stdout.splitlines()[-1])
    rss = {int(k): v for k, v in measured["rss"].items()}
    growth = (rss[CALLS] - rss[WARM_UP]) / 2**20
    reliability.record("classify_load", {
        "classifications": CALLS, "warm_up": WARM_UP, "rss_mib": {k: round(v / 2**20, 1) for k, v in sorted(rss.items())},
        "growth_after_warm_up_mib": round(growth, 1), "bound_mib": MAX_GROWTH_MB,
    })
    assert growth <= MAX_GROWTH_MB, f"resident memory grew {growth:.1f} MB from call {WARM_UP} to {CALLS}: {rss}"
    assert measured["same_result_at_the_end"]


def test_one_classifier_shared_by_4_threads_returns_the_serial_results(videos):
    """A fresh classifier whose first calls (the model's tracing) happen in 4 threads at once, 16 videos
    between them, against one classifier called serially."""
    work = [videos[i % len(videos)] for i in range(16)]
    serial_classifier = VideoClassifier(PRESET_DIR)
    serial = [serial_classifier(v).probabilities for v in work]
    shared = VideoClassifier(PRESET_DIR)
    got, errors = [None] * len(work), []
    start = threading.Barrier(4)

    def worker(k):
        try:
            start.wait()
            for i in range(k, len(work), 4):
                got[i] = shared(work[i]).probabilities
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (a, b) in enumerate(zip(got, serial)):
        np.testing.assert_array_equal(a, b, err_msg=f"call {i} ({work[i]})")
