"""`video-swin convert` and `video-swin info`: checkpoints into presets, and what a preset holds."""

from __future__ import annotations


def _cmd_convert(args):
    from video_swin.checkpoints import convert

    if args.inflate:
        from video_swin.checkpoints import inflate

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
    from video_swin.models import presets

    print(f"wrote preset {path} ({describe_preset(presets.load_preset(path))})")


def describe_preset(preset) -> str:
    config = preset.config
    classes = f"{config['num_classes']} classes" if config.get("num_classes") else "backbone only"
    return f"{config['variant']}, window {tuple(config['architecture']['window_size'])}, {classes}"


def _cmd_info(args):
    from video_swin.zoo import resolve

    preset = resolve.load_preset(args.preset)
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
    if meta.get("zoo"):
        zoo = meta["zoo"]
        lines.append(f"registered:    {zoo.get('name')}, downloaded from {zoo.get('url')}; check: {zoo.get('sha256_check')}")
    print("\n".join(lines))



def add_subcommands(sub):
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

    p = sub.add_parser("info", help="describe a preset")
    p.add_argument("preset", help="preset folder or registered name (`video-swin presets`)")
    p.set_defaults(func=_cmd_info)
