"""`video-swin explain`: where the model finds the evidence for a class, drawn on the video."""

from __future__ import annotations


def _cmd_explain(args):
    import json

    import numpy as np

    from video_swin import files
    from video_swin.inference import explain_render
    from video_swin.inference.explain import explain

    explain_render.check_output(args.out)
    if args.maps is not None and not str(args.maps).lower().endswith(".npy"):
        raise ValueError(f"{args.maps}: --maps must end in .npy")
    explanation = explain(
        args.video,
        args.preset,
        label=args.label,
        top=args.top,
        method=args.method,
        layer=args.layer,
        views=args.views,
        occlusion_cube=args.cube,
        batch_size=args.batch,
    )
    explain_render.write(explanation, args.video, args.out)
    if args.maps is not None:
        maps = explanation.maps[0] if len(explanation.maps) == 1 else explanation.maps
        with files.atomic_path(args.maps) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, maps)
    if args.json:
        record = {"file": args.video, **explanation.to_dict(), "out": str(args.out)}
        if args.maps is not None:
            record["maps"] = str(args.maps)
        print(json.dumps(record))
        return
    t, details = explanation.timings, explanation.details
    cost = ""
    if "perturbed_clips_per_view" in details:
        cost = (f", {details['perturbed_clips_per_view']} occluded clips per view in batches of "
                f"{details['batch_size']}")
    method = explanation.method + (f" at {explanation.layer}" if explanation.layer else "")
    print(f"{args.video}  ({method}, {t['views']} view(s){cost}; model {t['model_s']:.2f}s, total {t['total_s']:.2f}s)")
    for label, prob in zip(explanation.labels, explanation.probabilities):
        print(f"  {label:<40} {prob:.4f}")
    if explanation.maps.max() == 0:
        print(f"note: the map has no heat: {method} found no positive evidence for the class there "
              "(docs/explain.md; --method occlusion measures the evidence directly)")
    first, last = int(explanation.frame_indices[0]), int(explanation.frame_indices[-1])
    print(f"wrote {args.out} (frames {first}-{last} of the video, heat map blended in)")
    if args.maps is not None:
        print(f"wrote {args.maps} (float32 {tuple(maps.shape)}, values in [0, 1])")


def add_subcommands(sub):
    from video_swin.inference.explain import DEFAULT_METHOD, DEFAULT_VIEWS, METHODS

    p = sub.add_parser(
        "explain",
        help="heat maps of where the model finds a class's evidence, drawn on the video",
        description="Heat maps of where the model finds the evidence for a class, blended into the video's "
        "frames (docs/explain.md: the methods and what each measured).",
    )
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("--preset", required=True, help="a classifier preset: folder or registered name (`video-swin presets`)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--label", help="the class to explain (default: the most probable)")
    which.add_argument("--top", type=int, default=1, help="explain the K most probable classes, side by side")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help=f"default {DEFAULT_METHOD}")
    p.add_argument("--layer", help="for gradient methods: patch_embed, stage1..stageN or norm")
    p.add_argument("--views", help=f"clips x crops averaged in original-frame coordinates (default {DEFAULT_VIEWS}: "
                   "the centre view)")
    p.add_argument("--cube", help="occlusion: the cube T x H x W in clip pixels (default: a 4 x 8 x 8 grid of the clip)")
    p.add_argument("--batch", type=int, help="occlusion: occluded clips per forward pass (default 16)")
    p.add_argument("--out", required=True, help="the drawn video: OUT.mp4 or OUT.gif")
    p.add_argument("--maps", help="also write the maps: float32 (T, H, W) in [0, 1] at the original resolution "
                   "((K, T, H, W) with --top K)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=_cmd_explain)
