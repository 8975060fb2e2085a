#!/usr/bin/env python
"""Our model at two commits, beside torchvision, in one run: did a change cost speed or memory?

Each side runs in its own process, interleaved round-robin as `video-swin bench` runs them (same seeded
weights, same input, a matmul-ceiling worker in every round):

  torch eager         torchvision `swin3d_*` (the reference of the ratios)
  ours default        this tree's `from_preset(...).predict_on_batch`
  ours default @OLD   the same call with the package of another checkout (`--old-src`, e.g. a git worktree of
                      an older commit: `git worktree add /tmp/old <commit>`), whose `video_swin.checks.bench`
                      (or, before the layout change, `video_swin.bench`) serves as the worker

    git worktree add /tmp/video-swin-old 129a0c9
    .venv/bin/python benchmarks/compare_commits.py --old-src /tmp/video-swin-old/src --runs 9 \\
        --json benchmarks/results/2026-12-04/layout_before_after.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_swin.checks import bench  # noqa: E402


class OldWorker(bench.Worker):
    """A worker running another checkout's package."""

    def __init__(self, name, spec, log, old_src):
        super().__init__(name, spec, log)
        self.old_src = Path(old_src)

    def command(self):
        module = "video_swin.checks.bench" if (self.old_src / "video_swin" / "checks").is_dir() else "video_swin.bench"
        return [sys.executable, "-m", module, "--worker", json.dumps(self.spec)]

    def environment(self):
        return dict(super().environment(), PYTHONPATH=str(self.old_src))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old-src", required=True, help="the src/ folder of the other checkout")
    p.add_argument("--label", default="old", help="the other checkout's name in the table (default: old)")
    p.add_argument("--variant", default="tiny", choices=tuple(bench.VARIANTS))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-timeout", type=float, default=1800)
    p.add_argument("--workdir")
    p.add_argument("--json")
    args = p.parse_args(argv)
    out_dir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="video-swin-commits-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "workers.log", "a")
    shape = (args.batch, args.frames, args.size, args.size, 3)
    results = {"machine": bench.machine_description(), "args": vars(args), "old_src": str(Path(args.old_src).resolve())}
    print(f"machine: {results['machine']}", flush=True)
    t0 = time.perf_counter()
    checkpoint, preset, inputs = bench.prepare(out_dir, args.variant, args.seed, [shape], log, args.first_timeout)
    common = {"variant": args.variant, "checkpoint": str(checkpoint), "preset": str(preset), "input": str(inputs[shape]),
              "train": False}

    def spec(kind, mode, tag):
        return {"kind": kind, "mode": mode, "output": str(out_dir / f"y_{tag}.npy"), **common}

    workers = [
        bench.Worker("matmul ceiling", {"kind": "ceiling"}, log),
        bench.Worker("torch eager", spec("torch", "eager", "torch"), log),
        bench.Worker("ours default", spec("ours", "default", "new"), log),
        OldWorker(f"ours default @{args.label}", spec("ours", "default", "old"), log, args.old_src),
    ]
    bench._run_group(workers, args.runs, args.warmup, args.first_timeout, lambda line: print(line, flush=True))
    flops = 2 * bench.multiply_adds(args.variant, args.frames, args.size, args.size, args.batch)
    rows, ceiling = bench.summarise_rows(workers, workers[0], flops, {"torch eager": workers[1]}, args.batch)
    new, old = workers[2], workers[3]
    if new.walls and len(new.walls) == len(old.walls):
        rows[2]["ratio_to_old"] = bench._median([a / b for a, b in zip(new.walls, old.walls)])
    import numpy as np

    ys = {tag: np.load(out_dir / f"y_{tag}.npy") for tag in ("torch", "new", "old") if (out_dir / f"y_{tag}.npy").is_file()}
    if len(ys) == 3:
        results["max_abs_logit_diff"] = {"new vs torch": float(np.abs(ys["new"] - ys["torch"]).max()),
                                         "old vs torch": float(np.abs(ys["old"] - ys["torch"]).max()),
                                         "new vs old": float(np.abs(ys["new"] - ys["old"]).max())}
    cell = {"variant": args.variant, "batch": args.batch, "frames": args.frames, "size": args.size, "rows": rows,
            "ceiling_gflops": ceiling}
    results.update(cell=cell, total_wall_s=time.perf_counter() - t0)
    print(bench.markdown_table(cell))
    if "ratio_to_old" in rows[2]:
        print(f"ours default / ours default @{args.label}: {rows[2]['ratio_to_old']:.3f} (median of per-round ratios)")
    print("largest |logit difference|:", results.get("max_abs_logit_diff"))
    bench.save_results(args.json, results)
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
