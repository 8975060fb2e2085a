"""Subcommands `train`, `evaluate`, `extract-tfrecords` and `make-synthetic` of `video-swin`.

`add_subcommands(sub)` is called by `video_swin.cli.app.build_parser`; nothing here imports TensorFlow until a
command runs.
"""

from __future__ import annotations

import argparse


def _cmd_train(args):
    from video_swin.training.train import TrainConfig, train

    config = TrainConfig(
        out=args.out, data=args.data, val_data=args.val_data, val_split=args.val_split, preset=args.preset,
        arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, accum_steps=args.accum_steps, lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        min_lr=args.min_lr, label_smoothing=args.label_smoothing, head_dropout=args.head_dropout,
        drop_path_rate=args.drop_path_rate, frozen_stages=args.frozen_stages, precision=args.precision,
        remat=args.remat, background_difference=args.background_difference, clipnorm=args.clipnorm,
        clip_len=args.clip_len, frame_interval=args.frame_interval,
        short_side=args.short_side, crop_size=args.crop_size, mean=tuple(args.mean), std=tuple(args.std),
        random_crop=not args.no_random_crop, crop_scale=tuple(args.crop_scale), flip=not args.no_flip,
        flip_pairs=args.flip_pairs, test_views=args.test_views, workers=args.workers, seed=args.seed,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, strategy=args.strategy,
        devices=args.devices, max_steps=args.max_steps, jit_compile=args.jit, overwrite=args.overwrite,
    )
    if (config.preset is None) == (config.arch is None):
        raise ValueError("pass exactly one of --preset DIR_OR_NAME (fine-tune) and --arch NAME (from scratch)")
    result = train(config)
    if result.get("preset"):
        print(f"done: {result['step']} steps; preset {result['preset']}")
    else:
        print(f"stopped at step {result['step']}/{result['total_steps']}; run the same command to continue")


def _cmd_evaluate(args):
    from video_swin.training import evaluate

    evaluate.run(args)


def _cmd_extract(args):
    from video_swin.training import tfrecords

    tfrecords.run(args)


def _cmd_make_synthetic(args):
    from video_swin.data import synthetic

    synthetic.run(args)


def add_train_arguments(p):
    from video_swin.training.model import arch_names

    p.add_argument("--data", required=True, help="class-folder tree, 'path label' list, or extract-tfrecords folder")
    p.add_argument("--out", required=True, help="output folder (checkpoints, history, plot, final preset)")
    src = p.add_argument_group("model")
    src.add_argument("--preset", help="fine-tune this preset's backbone (folder or registered name; fresh head for the data's classes)")
    src.add_argument("--arch", choices=arch_names(), help="train this architecture from scratch instead")
    src.add_argument("--frozen-stages", type=int, default=-1,
                     help="-1: none; 0: patch embedding; k: patch embedding + first k stages (default -1)")
    src.add_argument("--drop-path-rate", type=float, default=None, help="stochastic depth (default: the preset's)")
    src.add_argument("--head-dropout", type=float, default=0.5)
    src.add_argument("--remat", action="store_true", help="recompute block activations in the backward pass")
    src.add_argument("--background-difference", action="store_true",
                     help="with --arch: feed |pixel - the clip's median colour| to the model (flat-background "
                          "footage such as make-synthetic's; see docs/training.md)")
    src.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32",
                     help="mixed precision (float16 uses dynamic loss scaling)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=30)
    opt.add_argument("--batch-size", type=int, default=8, help="clips per forward pass, all replicas (default 8)")
    opt.add_argument("--accum-steps", type=int, default=1, help="micro-batches per update (default 1)")
    opt.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the head (default 1e-3)")
    opt.add_argument("--backbone-lr-mult", type=float, default=None,
                     help="backbone lr = lr x this (default 0.1 with --preset, 1 from scratch)")
    opt.add_argument("--weight-decay", type=float, default=0.05)
    opt.add_argument("--warmup-epochs", type=float, default=2.5)
    opt.add_argument("--min-lr", type=float, default=0.0)
    opt.add_argument("--label-smoothing", type=float, default=0.0)
    opt.add_argument("--clipnorm", type=float, default=None, help="clip the global gradient norm")
    opt.add_argument("--seed", type=int, default=0)
    d = p.add_argument_group("data")
    d.add_argument("--val-data", help="validation data (default: a stratified --val-split of --data)")
    d.add_argument("--val-split", type=float, default=0.1)
    d.add_argument("--clip-len", type=int, default=32)
    d.add_argument("--frame-interval", type=int, default=2)
    d.add_argument("--short-side", type=int, default=256)
    d.add_argument("--crop-size", type=int, default=224)
    d.add_argument("--mean", type=float, nargs=3, default=[123.675, 116.28, 103.53], help="0-255 scale")
    d.add_argument("--std", type=float, nargs=3, default=[58.395, 57.12, 57.375], help="0-255 scale")
    d.add_argument("--no-random-crop", action="store_true", help="centre crop instead of RandomResizedCrop")
    d.add_argument("--crop-scale", type=float, nargs=2, default=[0.08, 1.0], help="RandomResizedCrop area range")
    d.add_argument("--no-flip", action="store_true", help="no horizontal flip (left/right-sensitive classes)")
    d.add_argument("--flip-pairs", help="flip and swap these labels, e.g. 'moving_left:moving_right'")
    d.add_argument("--test-views", default="4x3", help="the preset's evaluation views, clips x crops (default 4x3)")
    d.add_argument("--workers", type=int, default=None, help="parallel decoders (default min(4, CPUs))")
    run = p.add_argument_group("run")
    run.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default",
                     help="mirrored: all local GPUs (CPU hosts: --devices logical CPUs); multiworker: TF_CONFIG")
    run.add_argument("--devices", type=int, default=None, help="mirrored: number of local devices")
    run.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    run.add_argument("--keep-checkpoints", type=int, default=2)
    run.add_argument("--max-steps", type=int, default=None, help="stop after this step (resume later)")
    run.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                     help="XLA-compile the training step; unset: XLA on a single device, the graph on several")
    run.add_argument("--overwrite", action="store_true", help="ignore existing checkpoints in --out")
    return p


def add_subcommands(sub):
    from video_swin.data import synthetic
    from video_swin.training import evaluate, tfrecords

    p = sub.add_parser("train", help="fine-tune a preset or train from scratch on your videos",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_train_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="top-1/top-5 and confusion matrix of a preset on labelled videos")
    evaluate.add_arguments(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("extract-tfrecords", help="pre-extract videos to TFRecords of JPEG frames")
    tfrecords.add_arguments(p)
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("make-synthetic", help="write the synthetic 8-class motion video dataset")
    synthetic.add_arguments(p)
    p.set_defaults(func=_cmd_make_synthetic)
