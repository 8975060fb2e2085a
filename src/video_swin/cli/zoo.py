"""`video-swin presets` and `video-swin download`: the registered names, and fetching them ahead of time."""

from __future__ import annotations


def _size(row) -> str:
    if row["size_mib"] is None:
        return "?"
    approx = "~" if row["size"] == "estimated" else ""
    return f"{approx}{row['size_mib']:.1f} MiB"


def _accuracy(row) -> str:
    if row["top1"] is None:
        return "-"
    return f"{row['top1']} / {row['top5'] if row['top5'] is not None else '-'}"


def format_presets(rows, home, offline) -> str:
    """The table of `video-swin presets`."""
    header = ("name", "variant", "window", "classes", "pretrain", "top-1 / top-5", "size", "cached")
    table = [header]
    for row in rows:
        cached = row["cached"] if isinstance(row["cached"], str) else ("yes" if row["cached"] else "no")
        table.append((row["name"], row["variant"], ",".join(map(str, row["window"])), str(row["classes"]),
                      row["pretrain"], _accuracy(row), _size(row), cached))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    lines += [
        "",
        "top-1 / top-5: the publishers' figures, not re-measured here (official: 32 frames x 2, 4 clips x 3 crops,",
        "SSv2 1 x 3; torchvision: its own protocol, 12 clips at 15 fps; synthetic-motion: held-out generated clips).",
        "size: ~ = our estimate (the publisher states none); the downloaded size once cached.",
        f"cache: {home}" + (" (VIDEO_SWIN_OFFLINE=1: nothing will be downloaded)" if offline else ""),
    ]
    return "\n".join(lines)


def _cmd_presets(args):
    import json

    from video_swin.zoo import resolve

    rows = resolve.list_presets()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(format_presets(rows, resolve.zoo_home(), resolve.is_offline()))


def _cmd_download(args):
    from video_swin.cli.app import CommandError
    from video_swin.zoo import registry, resolve

    names = [e.name for e in registry.ENTRIES if e.url] if args.all else args.names
    if not names:
        raise CommandError("name a preset (`video-swin presets` lists them) or pass --all")
    for name in names:
        path = resolve.download_preset(name, force=args.force, log=lambda line: print(line, flush=True))
        print(f"{name}: {path}", flush=True)


def add_subcommands(sub):
    p = sub.add_parser("presets", help="the registered preset names: facts, published accuracy, cache state")
    p.add_argument("--json", action="store_true", help="one JSON object per name")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("download", help="fetch, check, convert and cache registered presets now (before going offline)")
    p.add_argument("names", nargs="*", metavar="NAME", help="registered names (`video-swin presets`)")
    p.add_argument("--all", action="store_true", help="every registered checkpoint (about 3 GiB)")
    p.add_argument("--force", action="store_true", help="download and convert again even if cached")
    p.set_defaults(func=_cmd_download)
