"""Runs one optimisation step of `video_swin.training.train` in a fresh process (TensorFlow's device
layout and TF_CONFIG must be set before it initialises); used by test_distributed.py.

    python tests/training/distributed_helper.py mirrored OUT      # 2 logical CPUs: single device vs MirroredStrategy
    python tests/training/distributed_helper.py worker OUT        # one MultiWorkerMirroredStrategy worker (TF_CONFIG)
    python tests/training/distributed_helper.py single OUT        # the single-device reference only
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GLOBAL_BATCH = 4  # 2 replicas x 2 clips


def _data():
    from video_swin.training.data import ArraySource

    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (8, 8, 40, 40, 3), dtype=np.uint8)
    return ArraySource(clips, np.arange(8) % 4, [f"c{i}" for i in range(4)])


def _config(out, strategy, devices=None):
    from video_swin.training.train import TrainConfig

    return TrainConfig(
        out=out, arch="test-nano", epochs=1, batch_size=GLOBAL_BATCH, lr=1e-2, warmup_epochs=0, head_dropout=0.0,
        drop_path_rate=0.0, clip_len=8, frame_interval=1, short_side=40, crop_size=32, mean=(127.5,) * 3,
        std=(64.0,) * 3, flip=True, crop_scale=(0.3, 1.0), workers=2, strategy=strategy, devices=devices,
        max_steps=1, overwrite=True, test_views="1x1", adam_epsilon=1e-4,
        # epsilon: see test_training.test_accumulation_equals_one_step_on_the_k_times_batch
    )


def _run(out, strategy, devices=None):
    from video_swin.training.train import train

    result = train(_config(out, strategy, devices), source=_data(), log=lambda *a: None)
    model = result["model"]
    return [np.asarray(w) for w in model.get_weights()], result


def main():
    mode, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    if mode == "mirrored":
        from video_swin.training.train import configure_devices

        configure_devices(2)
        single, _ = _run(os.path.join(out, "single"), "default")
        mirrored, result = _run(os.path.join(out, "mirrored"), "mirrored", devices=2)
        err = max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored))
        print(json.dumps({"max_abs_error": err, "replicas": result["replicas"], "step": result["step"]}))
        np.savez(os.path.join(out, "single.npz"), *single)
    elif mode == "single":
        single, _ = _run(os.path.join(out, "single"), "default")
        np.savez(os.path.join(out, "single.npz"), *single)
    elif mode == "worker":
        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        weights, result = _run(os.path.join(out, "multiworker"), "multiworker")
        np.savez(os.path.join(out, f"worker{index}.npz"), *weights)
        print(json.dumps({"worker": index, "step": result["step"], "replicas": result["replicas"]}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
