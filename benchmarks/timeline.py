#!/usr/bin/env python
"""Speed and memory of `video-swin timeline` on long videos.

    .venv/bin/python benchmarks/timeline.py --json benchmarks/results/<date>/timeline.json        # the real run
    .venv/bin/python benchmarks/timeline.py --long-s 20 --short-s 5 --height 240 --memory-height 240   # smoke test

Cases, each `timeline(...)` in its own worker process (a clean peak RSS, VmHWM, per case):

1. **Swin-T** (seeded random torchvision weights converted by our converter, as `video-swin bench` makes them:
   `checks.bench.prepare`; 400 classes, the Kinetics protocol, 32 frames every 2nd, 224²) on a `--long-s`
   (default 600 s) video of `--height` (default 720p) at 25 fps: frames per second of video processed, the
   decode / preprocess / model split (wall seconds in each stage, one thread of control: they add up to the
   total), the number of windows, whether XLA ran, peak RSS.
2. **The synthetic-motion model** (16 frames of 64², tiny) on the same video: the same figures; decoding and
   resizing dominate here.
3. **Memory against length**: the synthetic model on a `--short-s` (default 10 s) and a `--long-s` video of
   `--memory-height` (default 1080p): peak RSS of each and the difference (the claim: within 200 MB).

The videos are FFmpeg's `testsrc2` pattern (moving, coloured), libx264 ultrafast, made once in `--workdir`.
Swin-T's weights are random: its labels mean nothing, its speed is real.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SYNTHETIC = Path(__file__).resolve().parents[1] / "src" / "video_swin" / "zoo" / "builtin" / "synthetic_motion"


def make_video(path: Path, seconds: float, height: int, fps: int = 25) -> Path:
    if path.exists():
        return path
    width = int(round(height * 16 / 9 / 2)) * 2
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "250",
                    str(tmp)], check=True)
    os.replace(tmp, path)
    return path


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(spec: dict) -> dict:
    """One timeline in this process; returns its figures."""
    from video_swin.inference import timeline as tl

    rss_before = peak_rss_mib()
    model = tl.TimelineModel(spec["preset"], views=spec["views"], batch_size=spec["batch"], jit_compile=spec["jit"])
    rss_loaded = peak_rss_mib()
    start = time.perf_counter()
    result = model.timeline(spec["video"], stride_s=spec.get("stride_s"))
    wall = time.perf_counter() - start
    t = result["timings"]
    return {
        "case": spec["case"],
        "video": spec["video"],
        "frames": result["frames"],
        "duration_s": result["duration_s"],
        "windows": len(result["windows"]),
        "window_s": result["window_s"],
        "stride_s": result["stride_s"],
        "views": result["views"],
        "xla": t["xla"],
        "wall_s": wall,
        "frames_per_s": result["frames"] / wall,
        "video_s_per_s": result["duration_s"] / wall,
        "decode_s": t["decode_s"],
        "preprocess_s": t["preprocess_s"],
        "model_s": t["model_s"],
        "model_first_call_s": t.get("model_first_call_s", 0.0),
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_after_import_mib": rss_before,
        "peak_rss_after_load_mib": rss_loaded,
    }


def run_worker(spec: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['case']} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    return json.loads(lines[-1])


def swin_t_preset(workdir: Path, seed: int, timeout: float) -> Path:
    from video_swin.checks import bench

    preset = workdir / "tiny-preset"
    if not preset.exists():
        with open(workdir / "workers.log", "a") as log:
            bench.prepare(workdir, "tiny", seed, [], log, timeout)
    return preset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long-s", type=float, default=600.0, help="length of the long videos (default 600 s)")
    parser.add_argument("--short-s", type=float, default=10.0, help="the short video of the memory case (default 10 s)")
    parser.add_argument("--height", type=int, default=720, help="the speed cases' video height (default 720)")
    parser.add_argument("--memory-height", type=int, default=1080, help="the memory case's video height (default 1080)")
    parser.add_argument("--views", default="1x1", help="views per window (default 1x1)")
    parser.add_argument("--batch", type=int, default=4, help="windows per model call (default 4)")
    parser.add_argument("--jit", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--seed", type=int, default=0, help="Swin-T's weights seed")
    parser.add_argument("--skip-swin", action="store_true", help="only the synthetic-model cases")
    parser.add_argument("--workdir", help="videos and the Swin-T preset (kept between runs; default: a temp folder)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="per case, seconds")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    from video_swin.checks.bench import machine_description

    jit = {"auto": "auto", "true": True, "false": False}[args.jit]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="video-swin-timeline-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_description(), "args": vars(args), "cases": []}
    print(f"machine: {results['machine']}\nworkdir: {workdir}", flush=True)

    speed_video = make_video(workdir / f"testsrc_{args.long_s:g}s_{args.height}p.mp4", args.long_s, args.height)
    short_video = make_video(workdir / f"testsrc_{args.short_s:g}s_{args.memory_height}p.mp4", args.short_s, args.memory_height)
    long_video = make_video(workdir / f"testsrc_{args.long_s:g}s_{args.memory_height}p.mp4", args.long_s, args.memory_height)
    common = {"views": args.views, "batch": args.batch, "jit": jit}
    cases = []
    if not args.skip_swin:
        cases.append({"case": f"Swin-T, {args.long_s:g} s {args.height}p", "preset": str(swin_t_preset(workdir, args.seed, args.timeout)),
                      "video": str(speed_video), **common})
    cases += [
        {"case": f"synthetic model, {args.long_s:g} s {args.height}p", "preset": str(SYNTHETIC), "video": str(speed_video), **common},
        {"case": f"memory: synthetic model, {args.short_s:g} s {args.memory_height}p", "preset": str(SYNTHETIC),
         "video": str(short_video), **common},
        {"case": f"memory: synthetic model, {args.long_s:g} s {args.memory_height}p", "preset": str(SYNTHETIC),
         "video": str(long_video), **common},
    ]
    for spec in cases:
        print(f"[{spec['case']}]", flush=True)
        row = run_worker(spec, args.timeout)
        results["cases"].append(row)
        print(f"  {row['frames']} frames, {row['windows']} windows ({'XLA' if row['xla'] else 'graph'}): "
              f"{row['frames_per_s']:.1f} frames/s ({row['video_s_per_s']:.2f} s of video per s); decode "
              f"{row['decode_s']:.1f} s, preprocess {row['preprocess_s']:.1f} s, model {row['model_s']:.1f} s "
              f"(first call {row['model_first_call_s']:.1f} s); "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    short, long = results["cases"][-2], results["cases"][-1]
    results["memory_difference_mib"] = long["peak_rss_mib"] - short["peak_rss_mib"]
    print(f"peak RSS, {args.long_s:g} s against {args.short_s:g} s at {args.memory_height}p: "
          f"{long['peak_rss_mib']:.0f} - {short['peak_rss_mib']:.0f} = {results['memory_difference_mib']:+.0f} MiB")
    print("\n| case | frames/s | decode s | preprocess s | model s (first call) | windows | peak RSS MiB |\n"
          "|---|---|---|---|---|---|---|")
    for row in results["cases"]:
        print(f"| {row['case']} | {row['frames_per_s']:.1f} | {row['decode_s']:.1f} | {row['preprocess_s']:.1f} | "
              f"{row['model_s']:.1f} ({row['model_first_call_s']:.1f}) | {row['windows']} ({'XLA' if row['xla'] else 'graph'}) | {row['peak_rss_mib']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
