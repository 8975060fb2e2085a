"""`video-swin classify`: ranked labels per video file with the preset's test protocol; with `--out`, a
whole archive into a resumable Parquet file, in this process or on a Ray cluster (`--engine ray`)."""

from __future__ import annotations

import os
import sys

from video_swin.cli.app import (
    RAY_OPTIONS,
    CommandError,
    add_engine_arguments,
    add_precision_argument,
    positive_int,
    refuse_options,
    say_precision_notice,
)

ARCHIVE_OPTIONS = RAY_OPTIONS + ("rows_per_part", "retry_failed")


def _cmd_classify(args):
    import json

    if args.out is not None or args.engine == "ray":
        if args.precision != "float32":
            raise CommandError("--precision bfloat16 is for classifying files in this process, not with --out / --engine ray")
        return _classify_archive(args)
    refuse_options(args, ARCHIVE_OPTIONS, "--out / --engine ray runs")
    if args.batch is None:
        args.batch = 1

    from tqdm import tqdm

    from video_swin.inference.classify import VideoClassifier, expand_inputs

    files, failures = expand_inputs(args.videos)
    total = len(files) + len(failures)
    # One input: its failure is the command's one error line. Several: a line (or JSON record) per failed
    # input, the others still run, and the error line counts the failures.
    single = total == 1 and not args.json
    for name, message in failures:
        if single:
            raise CommandError(f"{name}: {message}")
        _report_failure(args, name, message)
    if files:
        classifier = VideoClassifier(args.preset, views=args.views, batch_size=args.batch, precision=args.precision)
        say_precision_notice(classifier.precision_notice)
        progress = tqdm(files, unit="video", disable=len(files) < 2 or not sys.stderr.isatty(), file=sys.stderr)
        for path in progress:
            try:
                result = classifier(path)
            except Exception as exc:  # one line per failing file; the others still run
                if os.environ.get("VIDEO_SWIN_DEBUG"):
                    raise
                if single:
                    raise CommandError(f"{path}: {exc}") from exc
                failures.append((path, str(exc)))
                _report_failure(args, path, str(exc))
                continue
            if args.json:
                print(json.dumps(result.record(path, args.top_k)), flush=True)
            else:
                top = result.top_k(args.top_k)
                t = result.timings
                print(
                    f"{path}  ({t['views']} views; decode {t['decode_s']:.2f}s, preprocess "
                    f"{t['preprocess_s']:.2f}s, model {t['model_s']:.2f}s)"
                )
                for rank, (label, prob) in enumerate(top, 1):
                    print(f"  {rank}. {label:<40} {prob:.4f}")
    if failures:
        raise CommandError(f"{len(failures)} of {total} input(s) failed")


def _classify_archive(args):
    import contextlib
    import json

    from video_swin.deploy import batch

    if args.out is None:
        raise CommandError("--engine ray writes its results to a file: add --out results.parquet")
    if args.engine == "local":
        refuse_options(args, RAY_OPTIONS, "--engine ray")
    options = {"rows_per_part": args.rows_per_part} if args.rows_per_part is not None else {}
    # Ray's driver prints the cluster's notices (e.g. "Task ... failed ... will be retried" when a worker dies)
    # on stdout; here stdout carries only the summary, so they go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        summary = batch.classify_archive(
            args.videos, args.preset, args.out, engine=args.engine, address=args.address, views=args.views,
            top_k=args.top_k, batch_size=args.batch or (1 if args.engine == "local" else batch.DEFAULT_RAY_BATCH),
            num_actors=args.actors, cpus_per_actor=args.cpus_per_actor or 1,
            gpus_per_actor=args.gpus_per_actor or 0, retry_failed=args.retry_failed, **options)
    if args.json:
        print(json.dumps(summary.as_dict()), flush=True)
    else:
        print(f"{summary.out}: {summary.processed} video(s) done by this run ({summary.errors} error row(s)), "
              f"{summary.skipped} already there")


def _report_failure(args, name, message):
    import json

    message = " ".join(message.split())
    if args.json:
        print(json.dumps({"file": name, "error": message}), flush=True)
    else:
        print(f"{name}: error: {message}", file=sys.stderr, flush=True)



def add_subcommands(sub):
    p = sub.add_parser("classify", help="classify video files with a preset's test protocol")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR")
    p.add_argument("--preset", required=True, help="preset folder, or a registered name (`video-swin presets`) fetched on first use")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--views", help="clips x crops, e.g. 4x3 (the protocol's default) or 1x1 (quick)")
    p.add_argument("--batch", type=positive_int, help="views per model call (memory grows with it; default 1, with --engine ray 4)")
    p.add_argument("--json", action="store_true", help="one JSON object per line (with --out: the run's summary)")
    add_precision_argument(p)
    archive = p.add_argument_group(
        "archives", "--out writes one row per video to a Parquet file (video, labels, probabilities, timings, error), "
        "resumable: a rerun skips the videos already there; docs/ray.md")
    archive.add_argument("--out", metavar="RESULTS.parquet", help="write the results to this Parquet file")
    add_engine_arguments(archive)
    archive.add_argument("--rows-per-part", type=positive_int,
                         help="videos per part file written while running (default 500; also every 60 s)")
    archive.add_argument("--retry-failed", action="store_true", help="redo the videos whose row in --out is an error")
    p.set_defaults(func=_cmd_classify)
