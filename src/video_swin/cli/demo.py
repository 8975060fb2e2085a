"""`make demo`: the main job on embedded defaults, with no download.

1. The shipped synthetic-motion model classifies freshly generated clips (predictions next to truth).
2. Where it looks: an explanation GIF of one of those clips (the heat map on the frames), and its path.
3. `verify`: our tiny model against torchvision's swin3d_t with the same seeded random weights.
4. A seeded random checkpoint is converted into a preset and classifies a generated video file with the
   Kinetics test protocol. Its weights are random, so its labels mean nothing: it shows the path from a
   checkpoint file to ranked labels, which is what a real converted checkpoint goes through.
4. A long video: the shipped model makes the timeline of a newly generated video of motion segments,
   compared with the truth; the segment table, the plot and the labelled video go to `demo-output/`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from video_swin.zoo.synthetic_motion import DEMO_SEED


DEMO_OUTPUT = Path("demo-output")  # in the working folder: what the demo draws, to look at afterwards


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

    _section("2. Where the model looks: an explanation of one synthetic clip")
    explanation_demo()

    if torch_available:
        from video_swin.checks import verify

        _section("3. Parity: video_swin tiny vs torchvision swin3d_t (same seeded random weights)")
        if not verify.run():
            raise RuntimeError("verification failed")

    _section("4. Convert a checkpoint and classify a video file (Kinetics-400 protocol)")
    convert_and_classify()

    _section("5. A long video: what happens when (timeline)")
    long_video_timeline()


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


def explanation_demo(out_dir=None, seed=2026, index=1):
    """Explains clip `index` of the synthetic demo clips with the default method and writes the GIF to
    `out_dir` (default: demo-output/ in the working folder, beside the timeline's files). Returns its path."""
    from video_swin.data import synthetic
    from video_swin.inference import explain_render
    from video_swin.inference.explain import explain
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    out_dir = Path(out_dir) if out_dir is not None else DEMO_OUTPUT
    x, y = synthetic.generate_arrays(index + 1, seed=seed, randomize=True)
    clip = x[index]
    explanation = explain(clip, PRESET_DIR)
    out = explain_render.write(explanation, clip, out_dir / f"explanation_{synthetic.CLASSES[int(y[index])]}.gif")
    print(f"clip {index} of seed {seed}, a {synthetic.CLASSES[int(y[index])]} clip: the model says "
          f"{explanation.labels[0]} ({explanation.probabilities[0]:.3f})")
    print(f"explained with {explanation.method} ({explanation.details.get('perturbed_clips_per_view', 0)} occluded "
          f"copies of the clip; docs/explain.md compares the methods)")
    print(f"wrote {out}  <- open it: the heat map on the frames shows where the evidence for the class is")
    print(f"the same from the command line: video-swin explain VIDEO --preset {PRESET_DIR} --out OUT.gif")
    return out


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
        "These weights are RANDOM (seeded), so the labels above are meaningless. For real predictions run "
        "`video-swin classify VIDEO --preset kinetics400-swin-tiny` (the official Swin-T, fetched and converted "
        "on first use; `video-swin presets` lists the others)."
    )


TIMELINE_OUTPUT = DEMO_OUTPUT / "timeline"


def long_video_timeline(out_dir=TIMELINE_OUTPUT, minutes=2.0, seed=2026):
    """Generates a long synthetic video, makes its timeline with the shipped model and writes the table,
    the ActivityNet JSON, the plot and the annotated video to `out_dir`."""
    import json

    from video_swin import files
    from video_swin.cli.timeline import format_segments
    from video_swin.data.synthetic import make_long_video
    from video_swin.inference.timeline import activitynet_results, match_segments, timeline
    from video_swin.inference.timeline_render import annotate_video, plot_timeline
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    out_dir = Path(out_dir)
    video, truth_path = make_long_video(out_dir / "long_video.mp4", minutes=minutes, seed=seed)
    truth = json.loads(truth_path.read_text())["database"][video.stem]["annotations"]
    print(f"generated {video} ({minutes:g} min, {len(truth)} motion segments, seed {seed}); truth in {truth_path.name}")
    result = timeline(str(video), PRESET_DIR)
    table = format_segments(result)
    print(table)
    match = match_segments(result["segments"], truth, tiou=0.5)
    print(f"against the truth at temporal IoU 0.5: precision {match['precision']:.2f}, recall {match['recall']:.2f}, "
          f"F1 {match['f1']:.2f}")
    files.atomic_write_text(out_dir / "segments.txt", table + "\n")
    files.atomic_write_text(out_dir / "segments.json", json.dumps(activitynet_results(result), indent=1) + "\n")
    written = ["segments.txt", "segments.json"]
    try:
        plot_timeline(result, out_dir / "timeline.png")
        written.append("timeline.png")
    except RuntimeError as exc:  # matplotlib is an optional extra
        print(f"(no plot: {exc})")
    annotate_video(video, result, out_dir / "long_video_labelled.mp4")
    written.append("long_video_labelled.mp4")
    print(f"wrote {', '.join(written)} to {out_dir.resolve()}/")


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
