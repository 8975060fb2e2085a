"""Trains the shipped synthetic-motion preset from scratch (seeded) and evaluates it.

    .venv/bin/python scripts/train_synthetic.py            # writes src/video_swin/pretrained/synthetic_motion

1. training clips: `synthetic.generate_arrays(N, seed=0, randomize=True)` (uncompressed, in memory);
   validation: 400 clips of seed 1;
2. `video_swin.training.train` with the `synthetic-small` architecture from scratch. Augmentation uses the
   classes' symmetries instead of a plain flip (a plain flip would be wrong: the set has left/right
   classes): a horizontal flip swaps left/right and clockwise/anticlockwise, a vertical flip up/down and
   the rotations, swapping H and W swaps left/up, right/down and the rotations, and playing the clip
   backwards swaps every pair (growing/shrinking too); each is applied with p = 0.5 with its label map;
3. held-out evaluation on NEW clips: seed 2 of the same generator (uncompressed, and a subset round-tripped
   through the video codec as `make-synthetic` files are), and clips of an independent second generator
   (`video_swin.training.second_generator`: numpy rasterisation, other shapes, gradient backgrounds);
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
DEFAULT_PRESET = ROOT / "src" / "video_swin" / "pretrained" / "synthetic_motion"

# Label permutations of the synthetic classes under the clip's symmetries (see synthetic.CLASSES):
# 0 left, 1 right, 2 up, 3 down, 4 clockwise, 5 anticlockwise, 6 growing, 7 shrinking.
SYMMETRIES = {
    "hflip": (1, 0, 2, 3, 5, 4, 6, 7),
    "vflip": (0, 1, 3, 2, 5, 4, 6, 7),
    "transpose": (2, 3, 0, 1, 5, 4, 6, 7),
    "reverse": (1, 0, 3, 2, 5, 4, 7, 6),
}
MEAN, STD = (127.5, 127.5, 127.5), (64.0, 64.0, 64.0)

# A contrast curriculum. From scratch, on the full generator (random shape and background colours, noise),
# the model stays at chance for thousands of steps: finding the shape needs comparing it with a
# background of unknown colour before any motion can be learnt (measured: 3000 steps of batch 16 at
# 12.5% on a GPU, lr 3e-4 to 3e-3). On white shapes over black it learns the motion classes within ~500
# steps. Each stage blends every clip's colours from that easy case towards the generator's own colours
# by a difficulty d drawn per clip in [d_min, d_max] (noise scaled by d too); the last stage is the
# generator unchanged, video compression included. Stages: (clips, d_min, d_max, one polarity, compressed).
CURRICULUM = (
    (8000, 0.0, 0.0, True, 0),
    (4000, 0.0, 0.3, False, 0),
    (8000, 0.0, 0.7, False, 0),
    (8000, 0.4, 1.0, False, 0),
    (14000, 1.0, 1.0, False, 2000),
)


def _curriculum_job(job):
    import dataclasses

    import numpy as np

    from video_swin import synthetic

    i, seed, d_min, d_max, fixed_polarity = job
    label, j = i % len(synthetic.CLASSES), i // len(synthetic.CLASSES)
    rng = np.random.default_rng([seed, label, j])
    p = synthetic.sample_params(label, rng, randomize=True)
    d = float(rng.uniform(d_min, d_max))
    if d < 1.0:
        fg_easy, bg_easy = (255.0, 0.0) if fixed_polarity or rng.random() < 0.5 else (0.0, 255.0)
        fg = tuple(fg_easy + d * (float(c) - fg_easy) for c in p.fg)
        bg = tuple(bg_easy + d * (float(c) - bg_easy) for c in p.bg)
        p = dataclasses.replace(p, fg=fg, bg=bg, noise_std=p.noise_std * d)
    return synthetic.render_params(p)


def curriculum_arrays(n, seed, d_min, d_max, fixed_polarity, workers):
    """`n` uncompressed clips (labels interleaved) whose colours sit at difficulty d in [d_min, d_max]:
    d = 0 a white (or black) shape on black (or white) without noise, d = 1 the generator's own clip."""
    import multiprocessing

    import numpy as np

    jobs = [(i, seed, d_min, d_max, fixed_polarity) for i in range(int(n))]
    with multiprocessing.get_context("fork").Pool(max(1, int(workers or 1))) as pool:
        x = np.stack(pool.map(_curriculum_job, jobs, chunksize=64))
    return x, np.arange(int(n), dtype=np.int64) % 8


def accuracy(probs, labels):
    import numpy as np

    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_PRESET), help="where the final preset goes")
    p.add_argument("--work", default=str(ROOT / "runs" / "synthetic_motion"), help="checkpoints, history, plot")
    p.add_argument("--arch", default="synthetic-small")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every stage's clip count (a quick run: 0.1)")
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

    from video_swin import presets, synthetic
    from video_swin.training import second_generator
    from video_swin.training.data import ArraySource
    from video_swin.training.demo import classify_clips
    from video_swin.training.train import TrainConfig, train

    t0 = time.perf_counter()
    classes = list(synthetic.CLASSES)
    vx, vy = synthetic.generate_arrays(args.val_clips, seed=args.seed + 1, randomize=True, workers=args.workers)
    val = ArraySource(vx, vy, classes)
    t_data, stages, previous = 0.0, [], None
    for i, (clips, d_min, d_max, fixed_polarity, compressed) in enumerate(CURRICULUM):
        clips = int(round(clips * args.scale))
        t = time.perf_counter()
        x, y = curriculum_arrays(clips, seed=args.seed + 10 + i, d_min=d_min, d_max=d_max,
                                 fixed_polarity=fixed_polarity, workers=args.workers)
        if compressed:
            cx, cy = synthetic.generate_arrays(int(round(compressed * args.scale)), seed=args.seed + 100 + i,
                                               randomize=True, compress=True, workers=args.workers)
            x, y = np.concatenate([x, cx]), np.concatenate([y, cy])
        t_data += time.perf_counter() - t
        print(f"stage {i}: {len(x)} clips, difficulty {d_min}-{d_max}"
              f"{', one polarity' if fixed_polarity else ''}{f', {round(compressed * args.scale)} compressed' if compressed else ''}",
              flush=True)
        config = TrainConfig(
            out=str(Path(args.work) / f"stage{i}"), arch=args.arch if previous is None else None, preset=previous,
            backbone_lr_mult=1.0, epochs=1, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs,
            weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, head_dropout=0.0, clip_len=16,
            frame_interval=1, short_side=64, crop_size=64, mean=MEAN, std=STD, random_crop=False, flip=True,
            label_maps=dict(SYMMETRIES), test_views="1x1", workers=args.workers, seed=args.seed + i, overwrite=True,
            jit_compile=args.jit, log_every=50,
        )
        result = train(config, source=ArraySource(x, y, classes), val_source=val)
        previous = result["preset"]
        stages.append({"clips": len(x), "difficulty": [d_min, d_max], "one_polarity": fixed_polarity,
                       "compressed_clips": compressed, "val_top1": result["history"][-1].get("val_top1")})
        del x, y
    wall_train = time.perf_counter() - t0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(f"training finished: {wall_train:.0f}s wall (data generation {t_data:.0f}s included), "
          f"{cpu.ru_utime + cpu.ru_stime:.0f} CPU-seconds", flush=True)

    preset_dir = result["preset"]
    scores = {}
    tx, ty = synthetic.generate_arrays(args.test_clips, seed=args.seed + 2, randomize=True, workers=args.workers)
    scores["heldout_seed_uncompressed"] = accuracy(classify_clips(tx, preset_dir), ty)
    cx, cy = synthetic.generate_arrays(args.compressed_clips, seed=args.seed + 3, randomize=True, compress=True,
                                       workers=args.workers)
    scores["heldout_seed_compressed"] = accuracy(classify_clips(cx, preset_dir), cy)
    sx, sy = second_generator.generate(args.second_clips, seed=args.seed + 4)
    scores["second_generator"] = accuracy(classify_clips(sx, preset_dir), sy)
    counts = {"heldout_seed_uncompressed": len(ty), "heldout_seed_compressed": len(cy), "second_generator": len(sy)}
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
        "curriculum": stages,
        "train_cpu_seconds": round(cpu.ru_utime + cpu.ru_stime, 1),
        "machine": f"{os.cpu_count()} CPU cores (shared)",
        "evaluation": {k: {"top1": round(v, 4), "clips": counts[k]} for k, v in scores.items()},
        "seeds": {"train": args.seed, "val": args.seed + 1, "test": args.seed + 2, "compressed_test": args.seed + 3,
                  "second_generator": args.seed + 4},
    }
    out = presets.save_preset(model, args.out, class_names=classes, preprocessing=preset.preprocessing,
                              metadata=metadata, name="synthetic_motion", overwrite=True)
    size = (Path(out) / presets.WEIGHTS_FILE).stat().st_size
    print(f"wrote {out} (weights {size / 1e6:.2f} MB)")
    print(json.dumps({"scores": scores, "train_wall_seconds": round(wall_train, 1)}))


if __name__ == "__main__":
    main()
