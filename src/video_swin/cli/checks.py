"""`video-swin verify` and `video-swin bench`: our model against torchvision's `swin3d_*`."""

from __future__ import annotations

from video_swin.cli.app import CommandError


def _cmd_verify(args):
    from video_swin.checks import verify

    verify.import_torch()  # before TensorFlow; raises a clear error when torch is missing
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes] if args.shapes else None
    if shapes and any(len(s) != 4 for s in shapes):
        raise CommandError("--shapes takes BxTxHxW values, e.g. 1x16x224x224")
    if not verify.run(checkpoint=args.checkpoint, shapes=shapes, seed=args.seed):
        raise CommandError("verification failed: see the rows marked FAIL")


def _cmd_bench(args):
    from video_swin.checks import bench

    bench.run(args)


def add_subcommands(sub):
    p = sub.add_parser("verify", help="compare our model with torchvision's swin3d_* on the same weights")
    p.add_argument("--checkpoint", help="a .pth/.safetensors checkpoint to verify (default: seeded random tiny)")
    p.add_argument("--shapes", nargs="+", help="end-to-end shapes BxTxHxW (default: five shapes)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_verify)

    from video_swin.checks import bench  # imports neither TensorFlow nor torch: every side runs in a worker

    p = sub.add_parser("bench", help="latency, throughput, memory: our model against torchvision swin3d_* (interleaved)")
    bench.add_arguments(p)
    p.set_defaults(func=_cmd_bench)
