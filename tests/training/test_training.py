"""The training loop and its parts: optimiser rules, frozen stages, accumulation, recomputation, mixed
precision, the `train` / `evaluate` commands, atomic checkpoints and resuming after `kill -9`."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_no_native_lines
from video_swin.data import synthetic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_videos")
    synthetic.make_synthetic(root, clips=16, seed=11, frames=8, size=32, workers=1)
    return root


def _batch(n, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 32, 32, 3)).astype(np.float32)
    y = (np.arange(n) % 8).astype(np.int64)
    return tf.constant(x), tf.constant(y)


def _model(seed=0, arch="test-nano", **kw):
    import keras

    from video_swin.training.model import build_classifier

    keras.utils.set_random_seed(seed)
    kw.setdefault("head_dropout", 0.0)
    return build_classifier(8, arch=arch, **kw)


def _step(model, k, examples, lr=1e-2, weight_decay=0.05, precision="float32", epsilon=1e-8):
    import tensorflow as tf

    from video_swin.training import optim
    from video_swin.training.train import make_train_step

    opt = optim.make_optimizer(model, lr, weight_decay=weight_decay, precision=precision, epsilon=epsilon)
    opt.build(model.trainable_variables)
    return make_train_step(model, opt, tf.distribute.get_strategy(), 8, examples, k), opt


def test_warmup_cosine_schedule():
    from video_swin.training.optim import WarmupCosine

    s = WarmupCosine(1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    values = [float(s(i)) for i in (0, 4, 9, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.1, 0.5, 1.0, 1.0, 0.55, 0.1, 0.1], atol=1e-6)


def test_no_weight_decay_on_norms_biases_and_bias_tables_and_backbone_lr_multiplier():
    from video_swin.training.optim import VideoAdamW, no_decay

    model = _model()
    backbone_ids = {id(v) for v in model.backbone.variables}
    opt = VideoAdamW(0.1, weight_decay=0.5, lr_multipliers=[(lambda v: id(v) in backbone_ids, 0.1)])
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    opt.apply([np.zeros(v.shape, np.float32) for v in variables], variables)  # zero gradients: decay only
    excluded = set()
    for v, b in zip(variables, before):
        if no_decay(v):
            excluded.add(v.path.split("/")[-1])
            np.testing.assert_array_equal(v.numpy(), b, err_msg=v.path)
        else:
            mult = 0.1 if id(v) in backbone_ids else 1.0
            np.testing.assert_allclose(v.numpy(), b * (1 - 0.1 * mult * 0.5), rtol=1e-6, err_msg=v.path)
    assert {"gamma", "beta", "bias", "relative_position_bias_table"} <= excluded
    decayed = {v.path.split("/")[-1] for v in variables if not no_decay(v)}
    assert decayed == {"kernel"}


def test_frozen_stages_are_untouched_and_in_inference_mode():
    import keras

    # test-micro: two stages; drop-path rates (0, 0.9): the second stage's block is random in training
    model = _model(arch="test-micro", frozen_stages=2, drop_path_rate=0.9)
    backbone = model.backbone
    frozen = [w for name in ("patch_embed", "layers_0", "layers_1") for w in backbone.get_layer(name).weights]
    trainable_ids = {id(v) for v in model.trainable_variables}
    assert frozen and not any(id(v) in trainable_ids for v in frozen)
    assert {v.path.split("/")[-2] for v in model.trainable_variables} == {"norm", "head"}
    stage = backbone.get_layer("layers_1")
    feats = keras.ops.convert_to_tensor(np.random.default_rng(0).standard_normal((2, 4, 4, 4, 16)).astype("float32"))
    np.testing.assert_array_equal(np.asarray(stage(feats, training=True)), np.asarray(stage(feats, training=False)))
    x, y = _batch(4)
    before = [v.numpy().copy() for v in frozen]
    others = [v.numpy().copy() for v in model.trainable_variables]
    step, _ = _step(model, 1, 4)
    step(x, y)
    for v, b in zip(frozen, before):
        np.testing.assert_array_equal(v.numpy(), b, err_msg=v.path)
    head = model.get_layer("head").kernel
    assert not np.array_equal(head.numpy(), others[[id(v) for v in model.trainable_variables].index(id(head))])


def test_training_step_is_xla_compiled_on_one_replica_by_default():
    import tensorflow as tf

    from video_swin.training.train import TrainConfig, make_train_step

    assert TrainConfig().jit_compile is None
    model = _model()
    for jit_compile, expected in [(False, False), (None, True)]:
        step = make_train_step(model, None, tf.distribute.get_strategy(), 8, 2, jit_compile=jit_compile)  # not run
        assert step._jit_compile is expected  # tf.function's own record of its jit_compile argument


def test_accumulation_equals_one_step_on_the_k_times_batch():
    x, y = _batch(6, seed=1)
    a, b = _model(seed=0), _model(seed=0)
    b.set_weights(a.get_weights())
    # epsilon 1e-4: the gradient of the key part of each qkv bias is exactly zero in exact arithmetic
    # (softmax ignores a constant added to every key's logit); in float32 it is ~1e-10 of noise that
    # depends on the summation order, and Adam with epsilon 1e-8 would turn it into +-lr steps.
    step_a, _ = _step(a, 3, 6, epsilon=1e-4)  # 3 micro-batches of 2
    step_b, _ = _step(b, 1, 6, epsilon=1e-4)  # one batch of 6
    for _ in range(2):
        la, ca = step_a(x, y)
        lb, cb = step_b(x, y)
        np.testing.assert_allclose(float(la), float(lb), rtol=1e-6)
        assert float(ca) == float(cb)
    err = max(np.abs(va - vb).max() for va, vb in zip(a.get_weights(), b.get_weights()))
    assert err <= 1e-5, err


def test_recomputation_gives_the_same_update_with_stochastic_depth():
    from video_swin.training.model import blocks

    x, y = _batch(4, seed=2)
    plain = _model(seed=3, arch="test-micro", drop_path_rate=0.5)
    remat = _model(seed=3, arch="test-micro", drop_path_rate=0.5, remat=True)
    assert all(getattr(b, "_video_swin_remat", False) for b in blocks(remat))
    remat.set_weights(plain.get_weights())
    for m in (plain, remat):  # the same seed-generator states: the same drop-path masks
        for b in blocks(m):
            if b.drop_path.seed_generator is not None:  # block 0 has rate 0
                b.drop_path.seed_generator.state.assign(np.array([7, 0], dtype="uint32"))
    # epsilon 1e-4 for the reason given in the accumulation test: the key-bias gradient is float noise
    # that Adam with epsilon 1e-8 would blow up to +-lr steps, whatever the recomputation does.
    step_p, _ = _step(plain, 1, 4, epsilon=1e-4)
    step_r, _ = _step(remat, 1, 4, epsilon=1e-4)
    for _ in range(2):
        lp, _ = step_p(x, y)
        lr, _ = step_r(x, y)
        np.testing.assert_allclose(float(lp), float(lr), rtol=1e-6)
    err = max(np.abs(a - b).max() for a, b in zip(plain.get_weights(), remat.get_weights()))
    assert err <= 1e-6, err


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_step(precision):
    model = _model(precision=precision)
    assert model.backbone.get_layer("layers_0").blocks[0].attn.qkv.compute_dtype == precision
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    step, opt = _step(model, 1, 4, precision=precision)
    if precision == "float16":
        assert type(opt).__name__ == "LossScaleOptimizer"
    x, y = _batch(4)
    for _ in range(2):
        loss, _ = step(x, y)
    assert np.isfinite(float(loss))
    assert any(not np.array_equal(v.numpy(), b) for v, b in zip(model.trainable_variables, before))


def test_checkpoints_are_atomic_and_the_newest_readable_wins(tmp_path):
    from video_swin.training import optim
    from video_swin.training.train import latest_checkpoint, load_checkpoint, save_checkpoint

    model = _model()
    opt = optim.make_optimizer(model, 1e-3)
    opt.build(model.trainable_variables)
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, model, opt, {"step": 3}, keep=2)
    weights3 = [w.copy() for w in model.get_weights()]
    model.trainable_variables[0].assign(model.trainable_variables[0] + 1.0)
    save_checkpoint(folder, model, opt, {"step": 5}, keep=2)
    save_checkpoint(folder, model, opt, {"step": 7}, keep=2)
    assert sorted(p.name for p in folder.glob("ckpt-*.npz")) == ["ckpt-0000005.npz", "ckpt-0000007.npz"]
    assert not list(folder.glob(".*tmp*"))
    (folder / "ckpt-0000009.npz").write_bytes(b"PK\x03\x04 truncated")  # junk newer than the rest
    (folder / "checkpoint.json").write_text('{"latest": "ckpt-0000009.npz"}')
    assert latest_checkpoint(folder).name == "ckpt-0000007.npz"
    (folder / "ckpt-0000009.npz").unlink()
    save_checkpoint(folder, _model(seed=1), opt, {"step": 3}, keep=5)
    fresh = _model(seed=2)
    assert load_checkpoint(folder / "ckpt-0000003.npz", fresh, opt)["step"] == 3
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), weights3))


def _train_args(data, out, epochs=2, extra=()):
    return ["train", "--data", str(data), "--out", str(out), "--arch", "test-nano", "--epochs", str(epochs),
            "--batch-size", "4", "--clip-len", "8", "--frame-interval", "1", "--short-side", "32",
            "--crop-size", "32", "--crop-scale", "0.6", "1", "--no-flip", "--test-views", "1x1",
            "--mean", "127.5", "127.5", "127.5", "--std", "64", "64", "64", "--warmup-epochs", "0.5",
            "--lr", "2e-3", "--head-dropout", "0", "--workers", "2", *extra]


def test_train_and_evaluate_commands(video_folder, tmp_path, capsys, record_heap_releases):
    from video_swin import cli
    from video_swin.models import presets
    import matplotlib.image

    from video_swin.training import plot

    releases = record_heap_releases(0.001)
    out = tmp_path / "run"
    assert cli.main(_train_args(video_folder, out, extra=["--val-split", "0.25"])) == 0
    # each epoch's first step (the run's first traces and compiles the step) gives freed memory back as it runs
    assert releases.count(threading.current_thread().name) == 2 and "release-freed-heap" in releases
    printed = capsys.readouterr()
    assert "epoch 2: train loss" in printed.out and "val loss" in printed.out
    assert "clips/s" in printed.err
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(h["val_n"] == 8 for h in history)
    assert matplotlib.image.imread(out / "training.png").shape[:2] == (plot.HEIGHT, plot.WIDTH)
    assert (out / "history.csv").read_text().startswith("epoch,step,train_loss")
    preset = presets.load_preset(out / "preset")
    assert preset.class_names == list(synthetic.CLASSES)
    assert preset.config["preprocessing"]["clip_len"] == 8 and preset.config["preprocessing"]["num_clips"] == 1
    assert preset.metadata["steps"] == 4
    assert cli.main(["evaluate", "--data", str(video_folder), "--preset", str(out / "preset"), "--quick",
                     "--out", str(tmp_path / "metrics.json")]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["n"] == 16 and np.asarray(result["confusion"]).sum() == 16
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert "top-1" in capsys.readouterr().out


def test_resume_after_kill_9(video_folder, tmp_path):
    """SIGKILL in the middle of epoch 2, then the same command: it resumes from the last checkpoint and
    ends at the right step with one history entry per epoch; no partial checkpoint is ever visible.

    The kill follows the run's own output, not a clock: the trainer prints a progress line after every
    step (4 steps per epoch) and then writes that step's checkpoint (`--checkpoint-every 1`), so when the
    line of step 6 ("epoch 2/4 ... 2/4") arrives, the checkpoint of step 5 is on disk and the one of step
    6 may be being written as the process dies."""
    out = tmp_path / "run"
    epochs = 4
    cmd = [sys.executable, "-m", "video_swin.cli", *_train_args(video_folder, out, epochs, ["--val-split", "0",
                                                                                              "--checkpoint-every", "1"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT, text=True)
    watchdog = threading.Timer(300, proc.kill)  # a hung run ends the wait below instead of the test run
    watchdog.start()
    pointer = out / "checkpoints" / "checkpoint.json"
    seen, killed_at = [], None
    try:
        for line in proc.stdout:  # blocks until the trainer prints
            seen.append(line)
            if line.startswith("epoch 2/4") and " 2/4 loss" in line:
                killed_at = json.loads(pointer.read_text())["step"]
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
    proc.wait(timeout=60)
    assert killed_at is not None, "".join(seen)[-2000:]
    assert proc.returncode == -signal.SIGKILL
    assert killed_at >= 5, killed_at
    for f in (out / "checkpoints").glob("ckpt-*.npz"):  # every visible checkpoint is complete
        with np.load(f) as z:
            json.loads(bytes(z["meta"]).decode())
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    # tf.data's threads and XLA printed nothing of their own, in either run (the executable quiets them)
    assert_no_native_lines("".join(seen) + again.stdout + again.stderr)
    assert "resuming from" in again.stdout
    resumed_step = int(again.stdout.split("(step ")[1].split("/")[0])
    assert resumed_step >= killed_at and resumed_step < 4 * epochs
    assert f"done: {4 * epochs} steps" in again.stdout
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert [h["step"] for h in history] == [4 * e for e in range(1, epochs + 1)]
    assert (out / "preset" / "model.weights.h5").is_file()


@pytest.mark.parametrize("with_head", [True, False])
def test_classifier_from_a_preset_gets_its_backbone_and_a_fresh_head(tmp_path, with_head):
    from video_swin.models import presets
    from video_swin.training.model import build_classifier

    source = _model(seed=5)
    saved = source if with_head else source.backbone
    path = presets.save_preset(saved, tmp_path / "p", class_names=list(synthetic.CLASSES) if with_head else None)
    model = build_classifier(3, preset=path, head_dropout=0.2, drop_path_rate=0.3, frozen_stages=0)
    assert model.num_classes == 3 and model.backbone.drop_path_rate == 0.3
    for a, b in zip(model.backbone.get_weights(), source.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not model.backbone.get_layer("patch_embed").trainable


def test_background_difference_from_scratch_and_kept_when_fine_tuning(tmp_path):
    from video_swin.models import presets
    from video_swin.training.model import build_classifier

    source = build_classifier(4, arch="test-nano", background_difference=True)
    assert source.backbone.background_difference
    path = presets.save_preset(source, tmp_path / "p", class_names=list("abcd"))
    assert build_classifier(3, preset=path).backbone.background_difference  # the preset decides
    with pytest.raises(ValueError, match="trained with the background-difference input"):
        build_classifier(3, preset=path, background_difference=False)
    plain = presets.save_preset(build_classifier(4, arch="test-nano"), tmp_path / "q", class_names=list("abcd"))
    with pytest.raises(ValueError, match="trained without"):
        build_classifier(3, preset=plain, background_difference=True)
