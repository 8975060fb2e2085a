#!/usr/bin/env python
"""Videos per minute over an archive: single process against `--engine ray` on this machine, the cost of
each stage of the Ray pipeline, and from those costs the throughput expected on N nodes.

    python benchmarks/ray_batch.py --videos 400 --json benchmarks/results/<date>/ray_batch.json
    python benchmarks/ray_batch.py --videos 400 --preset kinetics400-swin-tiny --views 4x3 --size 256 \\
        --frames 64 --batch 4 --json ...               # the published protocol on 256p clips
    python benchmarks/ray_batch.py --address auto ...  # an existing cluster instead of a local one

What runs, each in a process of its own (the model's thread count is fixed when TensorFlow starts):

1. stages: in one process, on `--stage-videos` of the videos, with TensorFlow limited to
   `--cpus-per-actor` threads as in an actor: decode and preprocess per video (one thread, as a decode
   task), the model per batch of `--batch` views, and the driver per video (regrouping view rows into
   videos, writing the Parquet parts and the final file; over `--driver-videos` copies of the model's
   outputs, with the default part size);
2. single process: `video-swin classify DIR --out single.parquet` (the local engine: one video after
   another, the model at TensorFlow's default threads);
3. Ray: `classify_archive(engine="ray")` with this process as the driver, on a new local cluster sized to
   the machine (or `--address`).

For 2 and 3: the wall time with start-up (process, TensorFlow, model, cluster and actors) and the steady
rate after start-up: single process from the per-video timings it records (N / the sum of their decode,
preprocess and model times), Ray from the times its videos were completed in the driver (the videos after
the first `--warmup` fraction, over the time they took).

The projection (printed and in the JSON): a node of C CPUs running A actors of c CPUs each gives
    R_node = min(A / (V * m_view), (C - A*c) / d, B / b)            videos/s
with V views per video, m_view the model's seconds per view (per actor, at c threads), d the decode +
preprocess seconds per video (one CPU), B the network bandwidth into a node (`--network-gbps`) and b the
uint8 bytes of a video's views (worst case: every view crosses the network between a decode task and an
actor); N such nodes give
    R(N) = min(N * R_node, 1 / w)
with w the driver's seconds per video (one driver writes everything). GPU nodes: measure m_view there
(`--gpus-per-actor`), the formula is the same.

Timing figures are only meaningful on a quiet machine; on a shared one run it once on a tiny setting to
see that it works (`--videos 12 --stage-videos 4`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def make_videos(folder, count, frames, size, fps, seed=0):
    """`count` synthetic-motion clips (`frames` frames of `size` x `size` at `fps`)."""
    import numpy as np

    from video_swin.data import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        clip = synthetic.render_clip(synthetic.CLASSES[i % len(synthetic.CLASSES)], rng, frames=frames, size=size)
        synthetic.write_video(folder / f"clip{i:05d}.mp4", clip, fps=fps)
    return sorted(str(p) for p in folder.glob("*.mp4"))


def measure_stages(args):
    """Stage costs in this process (run as a child: TensorFlow threads = --cpus-per-actor)."""
    import numpy as np

    from video_swin.deploy import batch

    videos = sorted(str(p) for p in Path(args.folder).glob("*.mp4"))[: args.stage_videos]
    task = batch.ClassifyTask(args.preset, views=args.views, batch_size=args.batch)

    decode, preprocess, decode_wall, rows = [], [], [], []
    for video in videos:
        start = time.perf_counter()
        video_rows = batch.decode_video({"video": video}, task)
        decode_wall.append(time.perf_counter() - start)
        decode.append(video_rows[0]["decode_s"])
        preprocess.append(video_rows[0]["preprocess_s"])
        rows += video_rows
    views_per_video = len(rows) / len(videos)

    model = batch.ModelStage(task, threads=args.cpus_per_actor)
    model(batch._as_batch(rows[: args.batch]))  # the first call traces the graph
    if len(rows) < args.batch:
        raise SystemExit(f"--stage-videos {len(videos)} give {len(rows)} views, fewer than a batch of {args.batch}")
    per_batch, outputs = [], []
    for start in range(0, len(rows), args.batch):
        chunk = batch._as_batch(rows[start : start + args.batch])
        t = time.perf_counter()
        outputs.append(model(chunk))
        if len(chunk["video"]) == args.batch:  # a short last batch would flatter the time per view
            per_batch.append(time.perf_counter() - t)

    # The driver over --driver-videos videos (the model's outputs above, renamed), with the default part
    # size: regrouping view rows, the parts (each fsync'ed) and the final file.
    copies = max(1, args.driver_videos // len(videos))
    renamed = [{**out, "video": np.array([f"{v}#{k}" for v in out["video"]], dtype=object)}
               for k in range(copies) for out in outputs]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with task.open_writer(Path(tmp) / "out.parquet", task.settings()) as writer:
            regroup = batch.Regroup(task)
            for out in renamed:
                for row in regroup.add(out):
                    writer.add(row)
            writer.finalize()
        driver = (time.perf_counter() - t) / max(1, len(regroup.finished))

    return {
        "videos": len(videos),
        "views_per_video": views_per_video,
        "view_bytes": int(np.prod(task.view_shape)),
        "decode_s_per_video": statistics.median(decode),
        "preprocess_s_per_video": statistics.median(preprocess),
        "decode_task_s_per_video": statistics.median(decode_wall),
        "model_s_per_batch": statistics.median(per_batch),
        "model_s_per_view": statistics.median(per_batch) / args.batch,
        "model_batches": len(per_batch),
        "driver_s_per_video": driver,
        "driver_videos": len(regroup.finished),
        "model_threads": args.cpus_per_actor,
    }


def single_process(args, out):
    """`video-swin classify --out` (the local engine) as a process of its own."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "video_swin.cli", "classify", args.folder, "--preset", args.preset, "--views",
         args.views, "--batch", str(args.batch), "--out", str(out), "--json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"single process failed: {result.stderr.strip()}")
    timings = [t for t in pq.read_table(out, columns=["timings"]).column("timings").to_pylist() if t["model_s"]]
    busy = sum(t["decode_s"] + t["preprocess_s"] + t["model_s"] for t in timings)
    return {"wall_s": wall, "videos_per_min_wall": 60 * len(timings) / wall,
            "videos_per_min_steady": 60 * len(timings) / busy, "videos": len(timings)}


def ray_run(args, out):
    """`classify_archive(engine="ray")` with this process as the driver; completion times from `finish`."""
    from video_swin.deploy import batch
    from video_swin.inference.classify import expand_inputs

    completed = []

    class TimedClassifyTask(batch.ClassifyTask):
        def finish(self, video, outputs, columns, timings):
            completed.append(time.perf_counter())
            return super().finish(video, outputs, columns, timings)

    start = time.perf_counter()
    paths, errors = expand_inputs([args.folder])
    task = TimedClassifyTask(args.preset, views=args.views, batch_size=args.batch)
    summary = batch.run_task(task, paths, out, engine="ray", address=args.address, num_actors=args.actors,
                             cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                             batch_size=args.batch, input_errors=errors, progress=False)
    wall = time.perf_counter() - start
    skip = max(1, int(len(completed) * args.warmup))
    steady = (len(completed) - skip) / (completed[-1] - completed[skip - 1]) if len(completed) > skip else float("nan")
    return {"wall_s": wall, "videos_per_min_wall": 60 * len(completed) / wall, "videos_per_min_steady": 60 * steady,
            "videos": len(completed), "actors": summary.actors, "errors": summary.errors}


def projection(stages, cpus, cpus_per_actor, actors, network_gbps, nodes=(1, 2, 4, 8, 16, 32, 64)):
    views = stages["views_per_video"]
    m, d = stages["model_s_per_view"], stages["decode_task_s_per_video"]
    b = stages["view_bytes"] * views
    w = stages["driver_s_per_video"]
    model_rate = actors / (views * m)
    decode_rate = (cpus - actors * cpus_per_actor) / d
    network_rate = network_gbps * 1e9 / 8 / b
    node = min(model_rate, decode_rate, network_rate)
    bound = {model_rate: "model", decode_rate: "decode", network_rate: "network"}[node]
    formula = (f"R_node = min(A/(V*m_view), (C-A*c)/d, B/b) = min({actors}/({views:g}*{m:.4g}), "
               f"({cpus}-{actors}*{cpus_per_actor:g})/{d:.4g}, {network_gbps:g}e9/8/{b}) = {node:.4g} videos/s "
               f"({bound}-bound); R(N) = min(N*R_node, 1/w) with w = {w:.4g} s")
    table = {n: 60 * min(n * node, 1 / w) for n in nodes}
    return {"formula": formula, "node_videos_per_s": node, "bound": bound, "driver_limit_videos_per_s": 1 / w,
            "videos_per_min_by_nodes": table, "C": cpus, "A": actors, "c": cpus_per_actor}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="square frames of SIZE pixels")
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--preset", default="synthetic-motion")
    parser.add_argument("--views", default="2x1")
    parser.add_argument("--batch", type=int, default=4, help="views per model call")
    parser.add_argument("--address", help="an existing Ray cluster (default: a new local one)")
    parser.add_argument("--actors", type=int)
    parser.add_argument("--cpus-per-actor", type=float, default=1)
    parser.add_argument("--gpus-per-actor", type=float, default=0)
    parser.add_argument("--stage-videos", type=int, default=32)
    parser.add_argument("--driver-videos", type=int, default=5000, help="videos through the driver stage")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the videos left out of the steady rate")
    parser.add_argument("--network-gbps", type=float, default=10.0)
    parser.add_argument("--folder", help="reuse these videos instead of generating them")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--stages-only", action="store_true", help=argparse.SUPPRESS)  # the child of step 1
    args = parser.parse_args(argv)

    if args.stages_only:
        print(json.dumps(measure_stages(args)))
        return 0

    from video_swin.checks.bench import machine_description

    with tempfile.TemporaryDirectory(prefix="ray_batch_") as tmp:
        tmp = Path(tmp)
        if args.folder is None:
            args.folder = str(tmp / "videos")
            make_videos(Path(args.folder), args.videos, args.frames, args.size, args.fps)
        print(f"{machine_description()}\n{args.videos} videos of {args.frames}x{args.size}x{args.size}, preset "
              f"{args.preset}, views {args.views}, batch {args.batch}", flush=True)

        child = subprocess.run([sys.executable, __file__, "--stages-only", *(argv or sys.argv[1:]), "--folder", args.folder],
                               capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if child.returncode != 0:
            raise SystemExit(f"stage measurement failed:\n{child.stderr[-3000:]}")
        stages = json.loads(child.stdout.strip().splitlines()[-1])
        print("stages: " + json.dumps(stages), flush=True)

        single = single_process(args, tmp / "single.parquet")
        print("single process: " + json.dumps(single), flush=True)
        ray_results = ray_run(args, tmp / "ray.parquet")
        print("ray: " + json.dumps(ray_results), flush=True)

    # "Nodes like this one": this machine's CPUs and the pool size the run used here.
    projected = projection(stages, os.cpu_count(), args.cpus_per_actor, ray_results["actors"], args.network_gbps)
    print("projection: " + projected["formula"])
    for n, rate in projected["videos_per_min_by_nodes"].items():
        print(f"  {n:>3} node(s) like this one: {rate:,.0f} videos/min")
    report = {"machine": machine_description(), "config": {k: v for k, v in vars(args).items() if k != "stages_only"},
              "stages": stages, "single_process": single, "ray": ray_results, "projection": projected}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
