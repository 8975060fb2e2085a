#!/usr/bin/env python
"""Benchmark our Keras Video Swin against torchvision's swin3d_* (same as `video-swin bench`).

    .venv/bin/python benchmarks/bench.py                      # quick: tiny, 16x224x224, batch 1
    .venv/bin/python benchmarks/bench.py --variants tiny,small,base --frames 16,32 --batch 1,4 \\
        --ours default,eager,graph,xla --torch eager,compile --train --json benchmarks/full.json

See `python benchmarks/bench.py --help` and benchmarks/RESULTS.md. Each side runs in its own process.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from video_swin.checks.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
