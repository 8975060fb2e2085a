"""Helpers of tests/deploy/test_batch.py that Ray workers import too (so: no pytest, no torch).

`SlowClassifyTask` is `ClassifyTask` with a pause before each model batch: the tests that kill a process
"mid-run" need a run that lasts long enough to be caught in the middle, whatever the machine's speed. Its
settings are ClassifyTask's, so `video-swin classify --engine ray` resumes what it left.

    python -m tests.deploy.batch_helpers DIR OUT --address HOST:PORT [--delay 0.3] [--rows-per-part 1]

runs it as a driver of its own (a process the tests can kill).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from video_swin.deploy.batch import ClassifyTask, run_task
from video_swin.inference.classify import expand_inputs

PRESET = "synthetic-motion"
VIEWS = "2x1"  # two clips of the 16-frame videos: a video's views can fall into different model batches


def write_videos(folder, count, seed=0, frames=16):
    """`count` synthetic-motion clips of `frames` frames (default 16: 1 s) of 64x64 at 16 fps, and four broken files.
    Returns (good paths, {broken path: what is wrong})."""
    from tests.data.test_video import write_audio_only  # imported here: workers load this module too
    from video_swin.data import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    good = []
    for i in range(count):
        clip = synthetic.render_clip(synthetic.CLASSES[i % len(synthetic.CLASSES)], rng, frames=frames, size=64)
        good.append(str(synthetic.write_video(folder / f"clip{i:03d}.mp4", clip, fps=16)))
    (folder / "text.mp4").write_text("not a video at all\n")
    (folder / "empty.mp4").write_bytes(b"")
    data = (folder / "clip000.mp4").read_bytes()
    # cut where the frames begin: the index (written first) survives, no frame does. (A cut further in keeps
    # the frames before it, and the video is read as a shorter one: tests/data/test_video.py.)
    (folder / "truncated.mp4").write_bytes(data[: data.index(b"mdat") + 4])
    write_audio_only(folder / "audio_only.mp4")
    broken = {str(folder / name): name for name in ("text.mp4", "empty.mp4", "truncated.mp4", "audio_only.mp4")}
    return good, broken


class SlowClassifyTask(ClassifyTask):
    def __init__(self, *args, delay_s=0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay_s = float(delay_s)

    def load_model(self, threads=None):
        run = super().load_model(threads)
        delay_s = self.delay_s

        def slowly(pixels):
            time.sleep(delay_s)
            return run(pixels)

        return slowly


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--address", required=True)
    parser.add_argument("--delay", type=float, default=0.3)
    parser.add_argument("--rows-per-part", type=int, default=1)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args(argv)
    paths, errors = expand_inputs([args.folder])
    task = SlowClassifyTask(PRESET, views=VIEWS, batch_size=args.batch, delay_s=args.delay)
    summary = run_task(task, paths, args.out, engine="ray", address=args.address, num_actors=args.actors,
                       batch_size=args.batch, rows_per_part=args.rows_per_part, input_errors=errors, progress=False)
    print(json.dumps(summary.as_dict()), flush=True)


if __name__ == "__main__":
    main()
