#!/usr/bin/env python
"""Re-measures every accuracy row of the README's table for the shipped synthetic-motion preset.

    .venv/bin/python benchmarks/synthetic_accuracy.py                    # the README's rows: 800 / 200 / 400 / 400 clips
    .venv/bin/python benchmarks/synthetic_accuracy.py --json benchmarks/results/DATE/synthetic_accuracy.json
    .venv/bin/python benchmarks/synthetic_accuracy.py --clips 16          # a quick run of the script itself

The rows (README, "The embedded default"): our generator uncompressed (seed 2, 800 clips), through the video
codec as `make-synthetic` writes them (seed 3, 200 clips), the independent second generator with solid
backgrounds (seed 4, 400 clips) and with colour-gradient backgrounds (seed 4, 400 clips), the seeds and
counts scripts/train_synthetic.py measured on when it trained the preset (none was used in training).
Each row prints top-1 with its 95 % binomial (Wilson) interval next to the figure metadata.json records.
The fresh-seed floors of the >= 95 % claims are tests: tests/zoo/test_synthetic_preset.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name: (clips, seed) as the README's table reports them
README_ROWS = {
    "heldout_seed_uncompressed": (800, 2),
    "heldout_seed_compressed": (200, 3),
    "second_generator_solid": (400, 4),
    "second_generator_gradient": (400, 4),
}


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main(argv=None):
    from video_swin.zoo import synthetic_motion

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default=str(synthetic_motion.PRESET_DIR))
    p.add_argument("--clips", type=int, default=None, help="clips per row instead of the README's counts")
    p.add_argument("--workers", type=int, default=None, help="processes generating clips (default: all CPUs)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    from video_swin import runtime

    runtime.configure()
    recorded = json.loads((Path(args.preset) / "metadata.json").read_text()).get("evaluation", {})
    rows = []
    print("| held-out set | clips | seed | top-1 | 95 % interval | recorded in metadata.json |")
    print("|---|---|---|---|---|---|")
    for name, (clips, seed) in README_ROWS.items():
        n = args.clips or clips
        m = synthetic_motion.held_out_accuracy(name, n, seed, args.preset, workers=args.workers)
        low, high = wilson_interval(m["correct"], m["clips"])
        rec = recorded.get(name, {})
        rows.append({"set": name, "description": synthetic_motion.HELD_OUT_SETS[name], **m,
                     "wilson_95": [round(low, 4), round(high, 4)], "recorded": rec})
        recorded_text = f"{100 * rec['top1']:.1f} % of {rec['clips']}" if rec else "-"
        print(f"| {synthetic_motion.HELD_OUT_SETS[name]} | {m['clips']} | {seed} | {100 * m['top1']:.1f} % | "
              f"{100 * low:.1f}-{100 * high:.1f} % | {recorded_text} |", flush=True)
    if args.json:
        from video_swin import files

        payload = {"preset": str(args.preset), "date": time.strftime("%Y-%m-%d"), "rows": rows,
                   "command": " ".join([sys.executable, *sys.argv])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_bytes(Path(args.json), (json.dumps(payload, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
