"""`video-swin` command line. Subcommands import their modules lazily: `verify` must import torch before
TensorFlow, and `--help` should not wait for TensorFlow."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CommandError(Exception):
    """A failure already explained in one line."""


def _cmd_verify(args):
    from video_swin import verify

    verify.import_torch()  # before TensorFlow; raises a clear error when torch is missing
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes] if args.shapes else None
    if shapes and any(len(s) != 4 for s in shapes):
        raise CommandError("--shapes takes BxTxHxW values, e.g. 1x16x224x224")
    if not verify.run(checkpoint=args.checkpoint, shapes=shapes, seed=args.seed):
        raise CommandError("verification failed: see the rows marked FAIL")


def _cmd_convert(args):
    from video_swin import convert

    if args.inflate:
        from video_swin import inflate

        path = inflate.inflate_checkpoint(
            args.src, args.out, variant=args.variant, window_size=args.window, overwrite=args.overwrite
        )
    else:
        path = convert.convert_checkpoint(
            args.src,
            args.out,
            variant=args.variant,
            window_size=args.window,
            num_classes=args.num_classes,
            labels_file=args.labels,
            drop_path_rate=args.drop_path_rate,
            overwrite=args.overwrite,
        )
    from video_swin import presets

    print(f"wrote preset {path} ({describe_preset(presets.load_preset(path))})")


def describe_preset(preset) -> str:
    config = preset.config
    classes = f"{config['num_classes']} classes" if config.get("num_classes") else "backbone only"
    return f"{config['variant']}, window {tuple(config['architecture']['window_size'])}, {classes}"


def _cmd_info(args):
    from video_swin import presets

    preset = presets.load_preset(args.preset)
    model = preset.load_model()
    config, meta = preset.config, preset.metadata
    arch = config["architecture"]
    protocol = config.get("preprocessing") or {}
    lines = [
        f"preset:        {preset.path}",
        f"variant:       {config['variant']} (embed_dim {arch['embed_dim']}, depths {arch['depths']}, "
        f"heads {arch['num_heads']}, window {arch['window_size']}, patch {arch['patch_size']})",
        f"parameters:    {model.count_params():,}",
        f"classes:       {config.get('num_classes') or 'none (backbone)'}"
        + (f" ({', '.join(config['class_names'][:3])}, ...)" if config.get("class_names") else ""),
        f"protocol:      {protocol.get('sampling')} sampling, {protocol.get('clip_len')} frames x interval "
        f"{protocol.get('frame_interval')}, {protocol.get('num_clips')} clips x {protocol.get('num_crops')} crops, "
        f"short side {protocol.get('short_side')}, crop {protocol.get('crop_size')}",
        f"normalisation: mean {protocol.get('mean')}, std {protocol.get('std')} (0-255 scale)",
        f"source:        {meta.get('source_checkpoint', 'n/a')} (sha256 {meta.get('source_sha256', 'n/a')})",
        f"converted:     {meta.get('converted', meta.get('created', 'n/a'))} by video_swin "
        f"{meta.get('package_version', '?')}",
    ]
    print("\n".join(lines))


def _cmd_classify(args):
    import json

    from tqdm import tqdm

    from video_swin.classify import VideoClassifier, expand_inputs

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


def _cmd_demo(args):
    from video_swin import demo

    demo.run(skip_verify=args.skip_verify)


def _cmd_export(args):
    from video_swin import export

    path = export.export(
        args.preset, args.out, args.format, frames=args.frames, size=args.size, dynamic=args.dynamic,
        quantize=args.quantize, input_kind=args.input, overwrite=args.overwrite,
    )
    print(f"wrote {path} ({export.describe(path)})")


def _cmd_bench(args):
    from video_swin import bench

    bench.run(args)


def _window(values):
    return [int(v) for v in values] if values else None


def build_parser():
    parser = argparse.ArgumentParser(prog="video-swin", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="compare our model with torchvision's swin3d_* on the same weights")
    p.add_argument("--checkpoint", help="a .pth/.safetensors checkpoint to verify (default: seeded random tiny)")
    p.add_argument("--shapes", nargs="+", help="end-to-end shapes BxTxHxW (default: five shapes)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("convert", help="convert an official or torchvision checkpoint into a preset folder")
    p.add_argument("src", help=".pth (zip format) or .safetensors")
    p.add_argument("out", help="preset folder to create")
    p.add_argument("--variant", choices=["tiny", "small", "base", "large"], help="override detection")
    p.add_argument("--window", nargs=3, type=int, metavar=("D", "H", "W"), help="override detection")
    p.add_argument("--num-classes", type=int, help="override detection")
    p.add_argument("--labels", help="class names, one per line (default: by class count 400/600/174)")
    p.add_argument("--drop-path-rate", type=float, help="stochastic depth for fine-tuning")
    p.add_argument("--inflate", action="store_true", help="SRC is a 2D ImageNet Swin: inflate it to 3D")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("classify", help="classify video files with a preset's test protocol")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR")
    p.add_argument("--preset", required=True, help="preset folder (from `video-swin convert`)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--views", help="clips x crops, e.g. 4x3 (the protocol's default) or 1x1 (quick)")
    p.add_argument("--batch", type=int, default=1, help="views per model call (memory grows with it; default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("demo", help="the main job on the embedded default")
    p.add_argument("--skip-verify", action="store_true", help="only the classification part")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("info", help="describe a preset")
    p.add_argument("preset")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("export", help="export a preset for serving: TF SavedModel, TFLite/LiteRT or ONNX")
    p.add_argument("preset", help="preset folder")
    p.add_argument("out", help="SavedModel folder, or .tflite / .onnx file, to create")
    p.add_argument("--format", required=True, choices=["savedmodel", "tflite", "onnx"])
    p.add_argument("--frames", type=int, metavar="T", help="static clip length (tflite default: protocol clip_len)")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), help="static frame size (tflite default: crop)")
    p.add_argument("--dynamic", action="store_true", help="keep T, H, W dynamic (savedmodel, onnx; the default there)")
    p.add_argument("--quantize", action="store_true", help="tflite: dynamic-range int8 weights")
    p.add_argument("--input", choices=["float", "uint8"], default="float",
                   help="tflite/onnx input: float32 normalised pixels, or uint8 frames normalised in the graph "
                   "(a SavedModel has both signatures)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_cmd_export)

    from video_swin.training import cli as training_cli  # train, evaluate, extract-tfrecords, make-synthetic

    training_cli.add_subcommands(sub)

    from video_swin import bench  # imports neither TensorFlow nor torch: every side runs in a worker

    p = sub.add_parser("bench", help="latency, throughput, memory: our model against torchvision swin3d_* (interleaved)")
    bench.add_arguments(p)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "window", None) is not None:
        args.window = _window(args.window)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("video-swin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line, never a traceback
        if os.environ.get("VIDEO_SWIN_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, (ValueError, OSError, RuntimeError, CommandError)):
            message = f"unexpected {type(exc).__name__}: {message} (VIDEO_SWIN_DEBUG=1 shows a traceback)"
        print(f"video-swin: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
