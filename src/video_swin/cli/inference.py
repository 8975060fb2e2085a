"""`video-swin classify`: ranked labels per video file with the preset's test protocol."""

from __future__ import annotations

import os
import sys

from video_swin.cli.app import CommandError, positive_int


def _cmd_classify(args):
    import json

    from tqdm import tqdm

    from video_swin.inference.classify import VideoClassifier, expand_inputs

    files, failures = expand_inputs(args.videos)
    total = len(files) + len(failures)
    for name, message in failures:
        _report_failure(args, name, message)
    if files:
        classifier = VideoClassifier(args.preset, views=args.views, batch_size=args.batch)
        progress = tqdm(files, unit="video", disable=len(files) < 2 or not sys.stderr.isatty(), file=sys.stderr)
        for path in progress:
            try:
                result = classifier(path)
            except Exception as exc:  # one line per failing file; the others still run
                if os.environ.get("VIDEO_SWIN_DEBUG"):
                    raise
                failures.append((path, str(exc)))
                _report_failure(args, path, str(exc))
                continue
            top = result.top_k(args.top_k)
            if args.json:
                timings = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.timings.items()}
                record = {"file": path, "top_k": [{"label": l, "probability": p} for l, p in top], "timings": timings}
                print(json.dumps(record), flush=True)
            else:
                t = result.timings
                print(
                    f"{path}  ({t['views']} views; decode {t['decode_s']:.2f}s, preprocess "
                    f"{t['preprocess_s']:.2f}s, model {t['model_s']:.2f}s)"
                )
                for rank, (label, prob) in enumerate(top, 1):
                    print(f"  {rank}. {label:<40} {prob:.4f}")
    if failures:
        raise CommandError(f"{len(failures)} of {total} input(s) failed")


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
    p.add_argument("--preset", required=True, help="preset folder (from `video-swin convert`)")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--views", help="clips x crops, e.g. 4x3 (the protocol's default) or 1x1 (quick)")
    p.add_argument("--batch", type=positive_int, default=1, help="views per model call (memory grows with it; default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_classify)
