"""What the reliability tests measured, written where `docs/reliability.md` is generated from.

A test calls `record(name, {...})` with its counts, worst errors and memory figures. Nothing is written
unless `VIDEO_SWIN_RELIABILITY_RESULTS` names a folder (so `make test` leaves the tree clean); the
committed figures live in `docs/reliability/` and `scripts/reliability_report.py` turns them into
`docs/reliability.md`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

ENV = "VIDEO_SWIN_RELIABILITY_RESULTS"


def record(name: str, result: dict) -> Path | None:
    folder = os.environ.get(ENV)
    if not folder:
        return None
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        **result,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


class Worst:
    """The largest errors seen over many comparisons: absolute, and relative to the tolerance
    |a - b| / (atol + rtol |b|) (1.0 is the limit `numpy.testing.assert_allclose` allows)."""

    def __init__(self, rtol: float, atol: float):
        self.rtol, self.atol = rtol, atol
        self.count = 0
        self.abs = 0.0
        self.of_tolerance = 0.0
        self.where = None

    def add(self, got, want, where) -> None:
        import numpy as np

        got, want = np.asarray(got, dtype="float64"), np.asarray(want, dtype="float64")
        err = np.abs(got - want)
        ratio = float(np.max(err / (self.atol + self.rtol * np.abs(want)))) if err.size else 0.0
        self.count += 1
        if err.size and float(err.max()) > self.abs:
            self.abs = float(err.max())
        if ratio > self.of_tolerance:
            self.of_tolerance, self.where = ratio, where

    def as_dict(self) -> dict:
        return {
            "comparisons": self.count,
            "rtol": self.rtol,
            "atol": self.atol,
            "worst_abs_error": self.abs,
            "worst_error_of_tolerance": self.of_tolerance,
            "worst_case": self.where,
        }
