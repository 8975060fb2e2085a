"""Trains the shipped synthetic-motion preset from scratch (seeded) and evaluates it.

    .venv/bin/python scripts/train_synthetic.py            # writes src/video_swin/zoo/builtin/synthetic_motion

1. training clips: `synthetic.generate_arrays(N, seed=10, randomize=True)` in memory, plus a share
   round-tripped through the clip's own video codec settings (as `make-synthetic` files are); validation:
   400 clips of seed 1;
2. `video_swin.training.train` with the `synthetic-small` architecture from scratch, with the
   background-difference input (`layers.BackgroundDifference`: |pixel - the clip's median colour| - 0.15).
   Without it the model stays at chance for thousands of steps on this data: before any motion can be
   learnt it must find a shape of unknown colour on a background of unknown colour, and a linear patch
   embedding cannot undo the sign of an unknown contrast (measured: 3000 steps of batch 16 at 12.5 % on
   a GPU, lr 3e-4 to 3e-3, `benchmarks/results/2026-11-27/synthetic_recipe_sweep_h100_2026-11-27.log`; with the input
   stem, 87 % validation after 500 steps on 2 CPU cores: `--clips 8000 --compressed 0 --epochs 1`). Augmentation uses the classes' symmetries
   instead of a plain flip (a plain flip would be wrong: the set has left/right classes): a horizontal
   flip swaps left/right and clockwise/anticlockwise, a vertical flip up/down and the rotations,
   swapping H and W swaps left/up, right/down and the rotations, and playing the clip backwards swaps
   every pair (growing/shrinking too); each is applied with p = 0.5 with its label map;
3. held-out evaluation on NEW clips: seed 2 of the same generator (uncompressed, and a subset round-tripped
   through the video codec), and clips of an independent second generator
   (`video_swin.data.second_generator`: numpy rasterisation, other shapes, uniform noise) with solid
   backgrounds as the dataset is described, and with gradient backgrounds (outside the description);
4. the preset (config.json with class names and the 16x64x64 protocol) is written with the measured
   numbers, the command and its wall time in metadata.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRESET = ROOT / "src" / "video_swin" / "zoo" / "builtin" / "synthetic_motion"

# Label permutations of the synthetic classes under the clip's symmetries (see synthetic.CLASSES):
# 0 left, 1 right, 2 up, 3 down, 4 clockwise, 5 anticlockwise, 6 growing, 7 shrinking.
SYMMETRIES = {
    "hflip": (1, 0, 2, 3, 5, 4, 6, 7),
    "vflip": (0, 1, 3, 2, 5, 4, 6, 7),
    "transpose": (2, 3, 0, 1, 5, 4, 6, 7),
    "reverse": (1, 0, 3, 2, 5, 4, 7, 6),
}
MEAN, STD = (127.5, 127.5, 127.5), (64.0, 64.0, 64.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_PRESET), help="where the final preset goes")
    p.add_argument("--work", default=str(ROOT / "runs" / "synthetic_motion"), help="checkpoints, history, plot")
    p.add_argument("--arch", default="synthetic-small")
    p.add_argument("--clips", type=int, default=12000, help="uncompressed training clips")
    p.add_argument("--compressed", type=int, default=1500, help="training clips round-tripped through the codec")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--val-clips", type=int, default=400)
    p.add_argument("--test-clips", type=int, default=800)
    p.add_argument("--compressed-clips", type=int, default=200)
    p.add_argument("--second-clips", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-epochs", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-jit", dest="jit", action="store_false", help="no XLA for the training step")
    args = p.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from video_swin.models import presets
    from video_swin.data import synthetic
    from video_swin.training.data import ArraySource
    from video_swin.zoo.synthetic_motion import held_out_accuracy
    from video_swin.training.train import TrainConfig, train

    t0 = time.perf_counter()
    classes = list(synthetic.CLASSES)
    vx, vy = synthetic.generate_arrays(args.val_clips, seed=args.seed + 1, randomize=True, workers=args.workers)
    val = ArraySource(vx, vy, classes)
    x, y = synthetic.generate_arrays(args.clips, seed=args.seed + 10, randomize=True, workers=args.workers)
    if args.compressed:
        cx, cy = synthetic.generate_arrays(args.compressed, seed=args.seed + 11, randomize=True, compress=True,
                                           workers=args.workers)
        x, y = np.concatenate([x, cx]), np.concatenate([y, cy])
        del cx, cy
    t_data = time.perf_counter() - t0
    print(f"{len(x)} training clips ({args.compressed} through the codec) in {t_data:.0f}s", flush=True)
    config = TrainConfig(
        out=str(Path(args.work)), arch=args.arch, background_difference=True, backbone_lr_mult=1.0,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, head_dropout=0.0, clip_len=16,
        frame_interval=1, short_side=64, crop_size=64, mean=MEAN, std=STD, random_crop=False, flip=True,
        label_maps=dict(SYMMETRIES), test_views="1x1", workers=args.workers, seed=args.seed, overwrite=True,
        jit_compile=args.jit, log_every=50,
    )
    result = train(config, source=ArraySource(x, y, classes), val_source=val)
    del x, y
    wall_train = time.perf_counter() - t0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(f"training finished: {wall_train:.0f}s wall (data generation {t_data:.0f}s included), "
          f"{cpu.ru_utime + cpu.ru_stime:.0f} CPU-seconds", flush=True)

    preset_dir = result["preset"]
    held_out = {  # name: (clips, seed); benchmarks/synthetic_accuracy.py re-measures these on the shipped preset
        "heldout_seed_uncompressed": (args.test_clips, args.seed + 2),
        "heldout_seed_compressed": (args.compressed_clips, args.seed + 3),
        "second_generator_solid": (args.second_clips, args.seed + 4),
        "second_generator_gradient": (args.second_clips, args.seed + 4),
    }
    measured = {name: held_out_accuracy(name, n, seed, preset_dir, workers=args.workers)
                for name, (n, seed) in held_out.items()}
    scores = {name: m["top1"] for name, m in measured.items()}
    counts = {name: m["clips"] for name, m in measured.items()}
    for k, v in scores.items():
        print(f"  {k:<28} top-1 {100 * v:6.2f}%  ({counts[k]} clips)")

    preset = presets.load_preset(preset_dir)
    model = preset.load_model()
    metadata = {
        **preset.metadata,
        "description": "Video Swin trained from scratch on the synthetic motion dataset (8 classes, 16x64x64)",
        "command": command,
        "train_wall_seconds": round(wall_train, 1),
        "data_generation_seconds": round(t_data, 1),
        "training_clips": {"uncompressed": args.clips, "compressed": args.compressed, "epochs": args.epochs},
        "train_cpu_seconds": round(cpu.ru_utime + cpu.ru_stime, 1),
        "machine": f"{os.cpu_count()} CPU cores (shared)",
        "evaluation": {k: {"top1": round(v, 4), "clips": counts[k]} for k, v in scores.items()},
        "seeds": {"train": args.seed + 10, "train_compressed": args.seed + 11, "training_order": args.seed,
                  "val": args.seed + 1, "test": args.seed + 2, "compressed_test": args.seed + 3,
                  "second_generator": args.seed + 4},
    }
    out = presets.save_preset(model, args.out, class_names=classes, preprocessing=preset.preprocessing,
                              metadata=metadata, name="synthetic_motion", overwrite=True)
    size = (Path(out) / presets.WEIGHTS_FILE).stat().st_size
    print(f"wrote {out} (weights {size / 1e6:.2f} MB)")
    print(json.dumps({"scores": scores, "train_wall_seconds": round(wall_train, 1)}))


if __name__ == "__main__":
    main()
