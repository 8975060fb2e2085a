"""`video-swin timeline` (what happens when in a long video or a live stream) and `video-swin features`
(backbone features per window), thin layers over `video_swin.inference.timeline` and `.features`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from video_swin.cli.app import (
    RAY_OPTIONS,
    CommandError,
    add_engine_arguments,
    add_precision_argument,
    positive_int,
    refuse_options,
    say_precision_notice,
)


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _cmd_timeline(args):
    from video_swin import files
    from video_swin.data.video import is_url
    from video_swin.inference import timeline as tl

    live = args.video == "-" or is_url(args.video)
    follow = live if args.follow is None else args.follow
    if args.annotate and live:
        raise ValueError("--annotate needs a video file: it decodes the video a second time to draw on it "
                         "(record the stream to a file first)")
    if args.annotate and not args.annotate.lower().endswith(".mp4"):
        raise ValueError(f"--annotate writes an .mp4 file, got {args.annotate}")
    lines_to_stdout = follow or args.jsonl == "-"

    def print_window(record):
        if lines_to_stdout:
            print(json.dumps(record), flush=True)

    model = tl.TimelineModel(args.preset, views=args.views, batch_size=args.batch, jit_compile=args.jit,
                             precision=args.precision)
    say_precision_notice(model.precision_notice)
    stopped = None
    try:
        result = model.timeline(args.video, stride_s=args.stride_s, top_k=args.top_k, smooth=args.smooth,
                                min_score=args.min_score, video_id=args.video_id, fps=args.fps, format=args.format,
                                follow=follow, on_window=print_window, timeout_s=args.timeout_s, interruptible=True)
    except tl.StreamStopped as exc:
        if exc.partial is None:
            raise
        stopped, result = exc, exc.partial

    if args.jsonl and args.jsonl != "-":
        files.atomic_write_text(args.jsonl, "".join(line + "\n" for line in tl.window_lines(result)))
    if args.json:
        files.atomic_write_text(args.json, json.dumps(tl.activitynet_results(result), indent=1) + "\n")
    if args.plot:
        from video_swin.inference.timeline_render import plot_timeline

        plot_timeline(result, args.plot)
    if args.annotate and result["windows"]:
        from video_swin.inference.timeline_render import annotate_video

        annotate_video(args.video, result, args.annotate)
    if not lines_to_stdout:
        print(format_segments(result))
    written = [p for p in (args.jsonl if args.jsonl != "-" else None, args.json, args.plot,
                           args.annotate if result["windows"] else None) if p]
    if written and not lines_to_stdout:
        print("wrote " + ", ".join(written))
    if stopped is not None:
        if stopped.partial["stopped"]["reason"] == tl.INTERRUPTED:
            raise KeyboardInterrupt
        raise CommandError(str(stopped))


def format_segments(result) -> str:
    """The segment table `video-swin timeline` prints."""
    from video_swin.inference.timeline_render import _clock

    t = result["timings"]
    head = (f"{result['video']}: {len(result['segments'])} segment(s) in {_clock(result['duration_s'], 1)}; "
            f"{len(result['windows'])} windows of {result['window_s']:g} s every {result['stride_s']:g} s "
            f"({result['views']} views), smoothing {result['smooth']}, min score {result['min_score']:g}")
    lines = [head, f"  {'#':>3}  {'start':>8}  {'end':>8}  {'length':>8}  {'label':<32} score"]
    for i, s in enumerate(result["segments"], 1):
        start, end = s["segment"]
        lines.append(f"  {i:>3}  {_clock(start, 1):>8}  {_clock(end, 1):>8}  {end - start:>7.1f}s  "
                     f"{s['label']:<32} {s['score']:.2f}")
    fps = t["frames_decoded"] / t["total_s"] if t.get("total_s") else 0.0
    lines.append(f"  {t['frames_decoded']} frames at {fps:.0f} frames/s: decode {t['decode_s']:.2f} s, preprocess "
                 f"{t['preprocess_s']:.2f} s, model {t['model_s']:.2f} s ({'XLA' if t['xla'] else 'TF graph'})")
    return "\n".join(lines)


def _cmd_features(args):
    if args.engine == "ray":
        return _features_on_ray(args)
    refuse_options(args, RAY_OPTIONS, "--engine ray")
    from video_swin.inference.classify import expand_inputs
    from video_swin.inference.features import write_features

    videos, failures = expand_inputs(args.videos)
    for name, message in failures:
        print(f"{name}: error: {message}", file=sys.stderr, flush=True)

    def report(video, status, detail):
        if status == "failed":
            print(f"{video}: error: {detail}", file=sys.stderr, flush=True)
        elif status == "skipped":
            print(f"{video}: already done ({len(detail['windows'])} windows), skipped", flush=True)
        else:
            print(f"{video}: {len(detail['windows'])} windows -> {detail['shape']}", flush=True)

    summary = {"failed": []}
    if videos:
        summary = write_features(videos, args.preset, args.out, stride_s=args.stride_s, pool=args.pool,
                                 batch_size=args.batch, index=args.index, jit_compile=args.jit, on_video=report)
        print(f"index: {summary['index']}")
    failed = len(summary["failed"]) + len(failures)
    if failed:
        raise CommandError(f"{failed} of {len(videos) + len(failures)} input(s) failed")


def _features_on_ray(args):
    import contextlib

    from video_swin.deploy import batch

    if args.jit != "auto":
        raise CommandError("--jit applies to --engine local (the actors run the TF graph: their batches vary in size)")
    # Ray's driver prints the cluster's notices on stdout; here stdout carries only the summary.
    with contextlib.redirect_stdout(sys.stderr):
        summary = batch.features_archive(
            args.videos, args.preset, args.out, engine="ray", address=args.address, stride_s=args.stride_s,
            pool=args.pool, index=args.index, batch_size=args.batch, num_actors=args.actors,
            cpus_per_actor=args.cpus_per_actor or 1, gpus_per_actor=args.gpus_per_actor or 0)
    print(f"{summary.out}: {summary.processed} video(s) done by this run ({summary.errors} failed), "
          f"{summary.skipped} already there")
    print(f"index: {Path(summary.out) / ('index.' + args.index)}")
    if summary.errors:
        raise CommandError(f"{summary.errors} input(s) failed: {Path(summary.out) / 'failed.csv'}")


def _add_window_arguments(p):
    p.add_argument("--preset", required=True, help="preset: a folder or a registered name (`video-swin presets`)")
    p.add_argument("--stride-s", type=_positive_float, default=None,
                   help="seconds between window starts (default: half a clip)")
    p.add_argument("--batch", type=positive_int, default=4, help="windows per model call (default 4)")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default="auto",
                   help="run the model compiled by XLA (default: for live sources and videos of 32+ windows)")


def add_subcommands(sub):
    from video_swin.inference.timeline import DEFAULT_MIN_SCORE, DEFAULT_SMOOTH

    p = sub.add_parser(
        "timeline", help="what happens when in a long video or a live stream: windows, segments, plot, labelled video",
        description="Scores a window (the preset's clip) every --stride-s seconds while decoding the video once, "
                    "and merges consecutive windows with the same top label into segments. Prints the segment "
                    "table, or one JSON line per window (--jsonl -, and --follow for live sources).")
    p.add_argument("video", metavar="VIDEO",
                   help="a video file, - (a stream on stdin, e.g. ffmpeg ... -f mpegts -), or a URL (udp://, rtsp://, http://)")
    _add_window_arguments(p)
    p.add_argument("--views", default="1x1", choices=["1x1", "1x3"], help="per window: centre crop or three crops")
    add_precision_argument(p)
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per window in the JSON lines (default 5)")
    p.add_argument("--smooth", type=positive_int, default=DEFAULT_SMOOTH,
                   help=f"average the probabilities over this many windows (odd; 1 = none; default {DEFAULT_SMOOTH})")
    p.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                   help=f"drop segments whose mean probability is below this (default {DEFAULT_MIN_SCORE})")
    out = p.add_argument_group("outputs")
    out.add_argument("--jsonl", nargs="?", const="-", metavar="FILE",
                     help="one JSON line per window, to FILE or (no FILE) to stdout instead of the table")
    out.add_argument("--json", metavar="OUT", help="the segments in ActivityNet's results format")
    out.add_argument("--plot", metavar="OUT.png", help="the top classes' probability over time with the segments")
    out.add_argument("--annotate", metavar="OUT.mp4", help="the video with the current top-3 and a timeline strip")
    live = p.add_argument_group("streams")
    live.add_argument("--follow", action=argparse.BooleanOptionalAction, default=None,
                      help="print each window's JSON line (with its latency) as soon as it is scored "
                           "(default: on for stdin and URLs)")
    live.add_argument("--format", help="FFmpeg demuxer name when it cannot be guessed (e.g. mpegts)")
    live.add_argument("--fps", type=_positive_float, help="frame rate, for streams that do not give one")
    live.add_argument("--timeout-s", type=_positive_float, default=10.0,
                      help="a URL that sends nothing for this long has stopped (default 10)")
    live.add_argument("--video-id", help="the video's key in the outputs (default: the file's stem, stdin, the URL)")
    p.set_defaults(func=_cmd_timeline)

    p = sub.add_parser("features", help="backbone features per window of videos, one .npy each plus an index",
                       description="Backbone features of each window (the preset's clip every --stride-s seconds, "
                                   "centre crop): --pool mean -> (C,), none -> (T', H', W', C). Writes DIR/<video>.npy "
                                   "(windows, ...), DIR/<video>.json and DIR/index.csv|parquet; videos already done "
                                   "with the same settings are skipped.")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR")
    _add_window_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--pool", choices=["mean", "none"], default="mean", help="mean over positions, or the whole map")
    p.add_argument("--index", choices=["csv", "parquet"], default="csv", help="index format (parquet needs pyarrow)")
    engine = p.add_argument_group("engines", "--engine ray: decoding in Ray tasks, the backbone in an actor pool; "
                                  "failures listed in DIR/failed.csv; docs/ray.md")
    add_engine_arguments(engine)
    p.set_defaults(func=_cmd_features)

