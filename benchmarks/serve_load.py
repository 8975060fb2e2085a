#!/usr/bin/env python
"""`video-swin serve` under load: C concurrent clients x R requests of short clips, every answer checked.

    .venv/bin/python benchmarks/serve_load.py                          # 16 clients x 20 requests, synthetic-motion
    .venv/bin/python benchmarks/serve_load.py --clients 4 --requests 3 # a quick check that it works
    .venv/bin/python benchmarks/serve_load.py --preset PRESET --max-batch 16 --json serve_load.json

1. `--clips` new synthetic clips are written as mp4 and classified offline by `video-swin classify --json`
   (its own process): the answers every request must equal (same labels, probabilities within 1e-6).
2. The server starts as a process on 127.0.0.1 (`--max-batch`, `--queue-size` at least the clients, so
   that nothing is refused).
3. Warm-up: `--warmup` rounds of `clients` concurrent requests (the batch sizes the load will make), then
   the server's resident memory (VmRSS) is read: "after warm-up".
4. Sequential: `--sequential` requests from one client, one after another: the sequential rate.
5. Load: `clients` threads, each with its own keep-alive connection, send `requests` each, round-robin over
   the clips; each answer's status, latency and content are recorded.
6. Resident memory again ("after the run"); the model's batches from /metrics.

Reported: requests lost (any answer but 200, or none), answers that differ from the offline ones, latency
p50 / p99, throughput against the sequential rate, resident memory after warm-up and after the run (the
check: within 50 MB), views per model call. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RSS_TOLERANCE_MB = 50.0


def rss_mb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def make_clips(folder, n, seed):
    from video_swin.data import synthetic

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        label = synthetic.CLASSES[i % len(synthetic.CLASSES)]
        paths.append(synthetic.write_video(folder / f"clip_{i:02d}_{label}.mp4", synthetic.render_clip(label, rng)))
    return paths


def offline_answers(paths, preset, top_k):
    result = subprocess.run([sys.executable, "-m", "video_swin.cli", "classify", *map(str, paths), "--preset", preset,
                             "--json", "--top-k", str(top_k)], capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(r["file"]).name: r["top_k"] for r in records}


def same(answer, expected):
    return [r["label"] for r in answer] == [r["label"] for r in expected] and np.allclose(
        [r["probability"] for r in answer], [r["probability"] for r in expected], rtol=0, atol=1e-6)


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Clients:
    """Threads with a keep-alive httpx client each, posting clips and keeping what came back."""

    def __init__(self, url, clips, expected, top_k):
        self.url, self.clips, self.expected, self.top_k = url, clips, expected, top_k
        self.local = threading.local()

    def client(self):
        import httpx

        if getattr(self.local, "client", None) is None:
            self.local.client = httpx.Client(timeout=600)
        return self.local.client

    def ask(self, i):
        name, data = self.clips[i % len(self.clips)]
        start = time.perf_counter()
        try:
            response = self.client().post(f"{self.url}/v1/classify", params={"top_k": self.top_k},
                                          files={"file": (name, data, "video/mp4")})
            status, body = response.status_code, response.json() if response.status_code == 200 else response.text
        except Exception as exc:  # a lost request is counted, not raised
            status, body = None, f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - start
        correct = status == 200 and body["file"] == name and same(body["top_k"], self.expected[name])
        return {"status": status, "latency_s": latency, "correct": bool(correct),
                "batch_views": body["timings"]["batch_views"] if status == 200 else None}

    def run(self, clients, total):
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            start = time.perf_counter()
            results = list(pool.map(self.ask, range(total)))
            return results, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="synthetic-motion")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--clips", type=int, default=8, help="different clips, sent round-robin")
    parser.add_argument("--sequential", type=int, default=40, help="requests for the sequential rate")
    parser.add_argument("--warmup", type=int, default=3, help="rounds of `clients` concurrent requests first")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args(argv)

    from video_swin.deploy.serve.process import ServerProcess

    env = {"VIDEO_SWIN_API_KEY": ""}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmp = Path(tmp)
        paths = make_clips(tmp, args.clips, args.seed)
        expected = offline_answers(paths, args.preset, args.top_k)
        clips = [(p.name, p.read_bytes()) for p in paths]
        server = ServerProcess(args.preset, "--max-batch", args.max_batch, "--queue-size", max(32, 2 * args.clients),
                               "--decode-workers", args.decode_workers, "--tmp-dir", tmp / "serve", "--no-access-log",
                               env=env, log_dir=tmp / "logs")
        with server:
            clients = Clients(server.url, clips, expected, args.top_k)
            warm, _ = clients.run(args.clients, args.warmup * args.clients)
            rss_warm = rss_mb(server.pid)
            sequential, sequential_s = clients.run(1, args.sequential)
            load, load_s = clients.run(args.clients, args.clients * args.requests)
            rss_after, rss_peak = rss_mb(server.pid), rss_mb(server.pid, "VmHWM")
            import httpx

            metrics_text = httpx.get(f"{server.url}/metrics").text
        left = [p for p in (tmp / "serve").rglob("*") if p.is_file()] if (tmp / "serve").exists() else []

    def value(name):
        for line in metrics_text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return float("nan")

    lost = [r for r in warm + sequential + load if r["status"] != 200]
    wrong = [r for r in warm + sequential + load if r["status"] == 200 and not r["correct"]]
    latencies = [r["latency_s"] for r in load if r["status"] == 200]
    sequential_rate = len(sequential) / sequential_s
    throughput = len(load) / load_s
    figures = {
        "preset": args.preset, "clients": args.clients, "requests_per_client": args.requests, "clips": args.clips,
        "max_batch": args.max_batch, "decode_workers": args.decode_workers, "cpus": os.cpu_count(),
        "requests": len(warm) + len(sequential) + len(load), "lost": len(lost), "wrong": len(wrong),
        "load_p50_s": percentile(latencies, 50), "load_p99_s": percentile(latencies, 99),
        "sequential_p50_s": percentile([r["latency_s"] for r in sequential], 50),
        "throughput_rps": throughput, "sequential_rps": sequential_rate, "throughput_vs_sequential": throughput / sequential_rate,
        "mean_batch_views": value("video_swin_model_views_total") / value("video_swin_model_batches_total"),
        "largest_batch_views": max((r["batch_views"] or 0) for r in load),
        "rss_after_warmup_mb": rss_warm, "rss_after_run_mb": rss_after, "rss_peak_mb": rss_peak,
        "rss_growth_mb": rss_after - rss_warm, "temporary_files_left": len(left),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    checks = {
        "nothing lost": not lost,
        "every answer equals `video-swin classify`": not wrong,
        f"resident memory after the run within {RSS_TOLERANCE_MB:g} MB of after warm-up": abs(figures["rss_growth_mb"]) <= RSS_TOLERANCE_MB,
        "no temporary file left": not left,
    }
    figures["checks"] = checks
    print(f"{args.clients} clients x {args.requests} requests of {args.clips} clips, preset {args.preset}, "
          f"--max-batch {args.max_batch}, {os.cpu_count()} CPUs")
    print(f"  answered 200: {figures['requests'] - len(lost)} of {figures['requests']}; differing from the command line: {len(wrong)}")
    print(f"  latency under load: p50 {figures['load_p50_s'] * 1e3:.1f} ms, p99 {figures['load_p99_s'] * 1e3:.1f} ms "
          f"(alone: p50 {figures['sequential_p50_s'] * 1e3:.1f} ms)")
    print(f"  throughput: {throughput:.1f} requests/s under load vs {sequential_rate:.1f} sequential "
          f"({figures['throughput_vs_sequential']:.2f}x); {figures['mean_batch_views']:.2f} views per model call "
          f"(largest {figures['largest_batch_views']})")
    print(f"  resident memory: {rss_warm:.0f} MB after warm-up, {rss_after:.0f} MB after the run "
          f"({figures['rss_growth_mb']:+.1f} MB), peak {rss_peak:.0f} MB")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}: {name}")
    if args.json:
        from video_swin import files

        with files.atomic_path(args.json) as out:
            out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
