"""`make demo`: the main job on embedded defaults, with no download.

1. The shipped synthetic-motion model classifies freshly generated clips (predictions next to truth).
2. `verify`: our tiny model against torchvision's swin3d_t with the same seeded random weights.
3. A seeded random checkpoint is converted into a preset and classifies a generated video file with the
   Kinetics test protocol. Its weights are random, so its labels mean nothing: it shows the path from a
   checkpoint file to ranked labels, which is what a real converted checkpoint goes through.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from video_swin.zoo.synthetic_motion import DEMO_SEED


def _section(title):
    print(f"\n=== {title} ===", flush=True)


def run(skip_verify=False):
    torch_available = False
    if not skip_verify:
        from video_swin.checks import verify

        verify.import_torch()  # torch before TensorFlow in this process
        torch_available = True

    _section("1. The embedded default: a small Video Swin trained on synthetic motion clips")
    synthetic_demo()

    if torch_available:
        from video_swin.checks import verify

        _section("2. Parity: video_swin tiny vs torchvision swin3d_t (same seeded random weights)")
        if not verify.run():
            raise RuntimeError("verification failed")

    _section("3. Convert a checkpoint and classify a video file (Kinetics-400 protocol)")
    convert_and_classify()


def synthetic_demo(n_clips=24, seed=DEMO_SEED):
    """The shipped model on `n_clips` new clips (three of each class by default: enough that the count of
    correct predictions says something about a model claimed at >= 95 %). A missing or broken preset is
    an error, not a skipped section."""
    from video_swin.zoo.synthetic_motion import demo_synthetic

    rows = demo_synthetic(n_clips=n_clips, seed=seed)
    print(f"{'true class':<24} {'predicted':<24} probability")
    for truth, predicted, probability in rows:
        mark = "" if truth == predicted else "   <- wrong"
        print(f"{truth:<24} {predicted:<24} {probability:.3f}{mark}")
    correct = sum(t == p for t, p, _ in rows)
    print(f"{correct}/{len(rows)} correct on clips generated just now (seed {seed})")
    from video_swin.models import presets
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    recorded = presets.load_preset(PRESET_DIR).metadata["evaluation"]["heldout_seed_uncompressed"]
    print(f"(its top-1 on {recorded['clips']} held-out clips when it was trained: {100 * recorded['top1']:.1f} %; "
          "see README, 'The embedded default')")


def convert_and_classify(views="1x3"):
    from video_swin.checkpoints import checkpoint_io, convert
    from video_swin.inference.classify import VideoClassifier
    from video_swin.data.synthetic import write_video

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / "swin_tiny_seeded_random.safetensors"
        checkpoint_io.write_safetensors(checkpoint, convert.random_official_state_dict("tiny", seed=0))
        preset = convert.convert_checkpoint(checkpoint, tmp / "swin_tiny_preset")
        print(f"converted {checkpoint.name} -> preset (tiny, 400 Kinetics classes)")
        video = tmp / "generated.mp4"
        write_video(video, _generated_frames(), fps=25)
        print(f"classifying {video.name} (80 frames, 320x240) with {views} views (clips x crops):")
        result = VideoClassifier(preset, views=views)(str(video))
        for rank, (label, prob) in enumerate(result.top_k(5), 1):
            print(f"  {rank}. {label:<32} {prob:.4f}")
        t = result.timings
        print(f"  decode {t['decode_s']:.2f}s, preprocess {t['preprocess_s']:.2f}s, model {t['model_s']:.2f}s")
    print(
        "These weights are RANDOM (seeded), so the labels above are meaningless. Convert a real checkpoint "
        "(see README: `video-swin convert swin_tiny_patch244_window877_kinetics400_1k.pth k400-tiny`) and run "
        "`video-swin classify VIDEO --preset k400-tiny` for real predictions."
    )


def _generated_frames(n=80, height=240, width=320):
    """A ball bouncing across a gradient: a small deterministic test video."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        cx, cy = 40 + (i * 7) % (width - 80), 120 + 60 * np.sin(i / 6)
        ball = (x - cx) ** 2 + (y - cy) ** 2 < 30**2
        frames[i, ..., 0] = (x * 255 // width).astype(np.uint8)
        frames[i, ..., 1] = (y * 255 // height).astype(np.uint8)
        frames[i, ..., 2] = 96
        frames[i][ball] = (250, 220, 40)
    return frames


def _cmd_demo(args):
    run(skip_verify=args.skip_verify)


def add_subcommands(sub):
    p = sub.add_parser("demo", help="the main job on the embedded default")
    p.add_argument("--skip-verify", action="store_true", help="only the classification part")
    p.set_defaults(func=_cmd_demo)
