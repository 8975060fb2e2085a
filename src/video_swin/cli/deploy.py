"""`video-swin export`: a preset as a SavedModel, TFLite or ONNX artefact."""

from __future__ import annotations


def _cmd_export(args):
    from video_swin.deploy import export

    path = export.export(
        args.preset, args.out, args.format, frames=args.frames, size=args.size, dynamic=args.dynamic,
        quantize=args.quantize, input_kind=args.input, overwrite=args.overwrite,
    )
    print(f"wrote {path} ({export.describe(path)})")



def add_subcommands(sub):
    p = sub.add_parser("export", help="export a preset for serving: TF SavedModel, TFLite/LiteRT or ONNX")
    p.add_argument("preset", help="preset folder or registered name (`video-swin presets`)")
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
