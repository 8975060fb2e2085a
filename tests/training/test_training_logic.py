"""The training and evaluation logic against independent statements of it: `metrics` on hand-computed
cases, the label-smoothed loss against its formula (and torch's), our AdamW against torch.optim.AdamW
step by step, and a short run of `train` on an easy task that must actually be learnt."""

import math

import numpy as np
import pytest
import torch

from tests.helpers import assert_within_float32_ulps, binomial_sf, float32_ulp

# ------------------------------------------------------------------------------------------ metrics


def _probabilities(rankings, num_classes):
    """Rows of probabilities in which class ranking[0] has the largest value, ranking[1] the next, ..."""
    values = np.array([0.40, 0.20, 0.15, 0.10, 0.08, 0.05, 0.02])[:num_classes]
    probs = np.zeros((len(rankings), num_classes))
    for row, ranking in zip(probs, rankings):
        row[list(ranking)] = values[: len(ranking)]
    return probs / probs.sum(axis=1, keepdims=True)


def test_metrics_on_a_hand_computed_case():
    from video_swin.training.evaluate import metrics

    # 7 classes (so top-5 is a real top-5); classes 4-6 never occur as labels.
    labels = np.array([0, 1, 2, 2, 3, 0])
    rankings = [
        (0, 1, 2, 3, 4, 5, 6),  # right
        (2, 1, 0, 3, 4, 5, 6),  # predicted 2; the label is 2nd: in the top 5
        (0, 3, 4, 5, 6, 2, 1),  # predicted 0; the label is 6th: not in the top 5
        (2, 0, 1, 3, 4, 5, 6),  # right
        (3, 0, 1, 2, 4, 5, 6),  # right
        (1, 0, 2, 3, 4, 5, 6),  # predicted 1; the label is 2nd
    ]
    m = metrics(_probabilities(rankings, 7), labels, 7)
    assert m["n"] == 6 and m["top5_k"] == 5
    assert m["top1"] == pytest.approx(3 / 6)
    assert m["top5"] == pytest.approx(5 / 6)
    # per class (rows with a label only): class 0 1 of 2, class 1 0 of 1, class 2 1 of 2, class 3 1 of 1
    assert m["per_class_accuracy"] == [0.5, 0.0, 0.5, 1.0, None, None, None]
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 0.0 + 0.5 + 1.0) / 4)
    expected = np.zeros((7, 7), int)  # rows: true class, columns: predicted
    for true, predicted in [(0, 0), (1, 2), (2, 0), (2, 2), (3, 3), (0, 1)]:
        expected[true, predicted] += 1
    assert m["confusion"] == expected.tolist()


def test_metrics_with_fewer_than_five_classes_and_no_examples():
    from video_swin.training.evaluate import metrics

    m = metrics(_probabilities([(2, 0, 1), (1, 2, 0)], 3), np.array([0, 0]), 3)
    assert m["top5_k"] == 3 and m["top5"] == 1.0 and m["top1"] == 0.0  # top-k over all 3 classes
    assert m["confusion"] == [[0, 1, 1], [0, 0, 0], [0, 0, 0]]
    empty = metrics(np.zeros((0, 3)), np.zeros(0, np.int64), 3)
    assert empty["n"] == 0 and math.isnan(empty["top1"]) and empty["confusion"] == [[0] * 3] * 3


# ---------------------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_is_the_formula(smoothing):
    """loss = -sum_c q_c log softmax(z)_c with q = (1 - e) onehot(y) + e / C, in float64, and torch's
    cross_entropy(label_smoothing=e), which the official recipes use.

    Tolerance: 2 (C + 2) float32 ulps of max|z| + log C per example. The float32 loss is a log-sum-exp
    minus a C-term weighted sum; each of the ~C + 2 roundings (the shifted exponentials' sum, its log, the
    products and partial sums q_c z_c) is at most one ulp of the largest magnitude involved, which is
    max|z| + log C; the factor 2 covers exp's and log's own few-ulp accuracy."""
    from video_swin.training.train import cross_entropy

    num_classes, n = 5, 64
    rng = np.random.default_rng(3)
    logits = (3.0 * rng.standard_normal((n, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, n)
    z = logits.astype(np.float64)
    log_softmax = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    q = (1 - smoothing) * np.eye(num_classes)[labels] + smoothing / num_classes
    expected = -(q * log_softmax).sum(1)
    got = np.asarray(cross_entropy(labels, logits, num_classes, smoothing))
    magnitude = np.abs(z).max(1) + math.log(num_classes)
    assert_within_float32_ulps(got, expected, ulps=2 * (num_classes + 2), magnitude=magnitude)
    from_torch = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(labels),
                                                   label_smoothing=smoothing, reduction="none").numpy()
    np.testing.assert_allclose(expected, from_torch, rtol=1e-12, atol=1e-12)  # the same formula


# ---------------------------------------------------------------------------------------- optimiser

STEPS, LR, WEIGHT_DECAY = 6, 1e-2, 0.05


def test_adamw_equals_torch_adamw_over_several_steps():
    """VideoAdamW (float32) against torch.optim.AdamW run in float64 on the same starting values and
    gradients, with the default epsilon 1e-8, decay on a matrix, none on two vectors, and a learning-rate
    multiplier on one vector (torch: a parameter group with lr x 0.1). The gradients span 1, 1e-2 and
    1e-6: at 1e-6 the epsilon's placement decides the step (Keras' Adam puts it before the bias
    correction and moved 0.8 % of a learning rate less per step than torch here).

    Tolerance per element: STEPS x (2 float32 ulps of the parameter's magnitude + 64 * 2^-24 * 4 * lr):
    each step rounds the parameter twice (the decay and the update), and computes an update no larger
    than (1 - beta1) / sqrt(1 - beta2) * lr ~ 3.2 lr (Adam's bound) through ~10 float32 operations whose
    relative errors, and those carried in the moments, stay within 64 * 2^-24. The magnitude allows for
    the parameter's drift over the steps (at most 4 lr per step)."""
    import keras

    from video_swin.training.optim import VideoAdamW

    rng = np.random.default_rng(0)
    shapes, scales = [(4, 3), (3,), (5,)], [1.0, 1e-2, 1e-6]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    gradients = [[(sc * rng.standard_normal(s)).astype(np.float32) for s, sc in zip(shapes, scales)]
                 for _ in range(STEPS)]

    variables = [keras.Variable(v, name=f"v{i}") for i, v in enumerate(start)]
    slow = variables[1]
    ours = VideoAdamW(LR, weight_decay=WEIGHT_DECAY, lr_multipliers=[(lambda v: v is slow, 0.1)])
    ours.build(variables)
    assert [ours.decays(v) for v in variables] == [True, False, False]
    for g in gradients:
        ours.apply(g, variables)

    params = [torch.nn.Parameter(torch.from_numpy(v.astype(np.float64))) for v in start]
    reference = torch.optim.AdamW([
        {"params": [params[0]], "weight_decay": WEIGHT_DECAY},
        {"params": [params[1]], "weight_decay": 0.0, "lr": LR * 0.1},
        {"params": [params[2]], "weight_decay": 0.0},
    ], lr=LR)  # betas (0.9, 0.999), eps 1e-8: torch's defaults and ours
    for g in gradients:
        for p, gi in zip(params, g):
            p.grad = torch.from_numpy(gi.astype(np.float64))
        reference.step()

    for v, p, s in zip(variables, params, start):
        want = p.detach().numpy()
        assert not np.allclose(want, s)  # every variable moved
        tolerance = STEPS * (2 * float32_ulp(np.abs(want) + 4 * LR * STEPS) + 64 * 2.0**-24 * 4 * LR)
        error = np.abs(v.numpy().astype(np.float64) - want)
        assert (error <= tolerance).all(), (v.path, error.max(), (error / tolerance).max())


# ------------------------------------------------------------------------------------- it learns

CLASSES = ("red, brightening", "red, darkening", "blue, brightening", "blue, darkening")


def _easy_clips(n, seed):
    """8x32x32 clips whose class is a colour (red or blue) and a brightness trend over time (up or down),
    with random base colours, ramps and noise: the model needs both the colour and the time axis."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    clips = np.empty((n, 8, 32, 32, 3), np.uint8)
    for i, label in enumerate(labels):
        base = rng.uniform(150, 230) * (np.array([1.0, 0.2, 0.2]) if label < 2 else np.array([0.2, 0.2, 1.0]))
        base = base + rng.uniform(-20, 20, 3)
        ramp = np.linspace(rng.uniform(0.2, 0.3), 1.0, 8)
        ramp = ramp if label % 2 == 0 else ramp[::-1]
        frames = ramp[:, None, None, None] * base + rng.normal(0, 12, (8, 32, 32, 3))
        clips[i] = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return clips, labels


def test_a_short_run_learns_an_easy_task(tmp_path):
    """`train` from scratch (test-nano, label smoothing 0.1, our AdamW and schedule, the XLA step) on 128
    clips, 10 epochs of 16 steps; validated on 96 other clips. (The colours are learnt in 3 epochs, the
    brightness trends, which need the time axis, by epoch 6-8.)

    Must hold: the training loss falls (the last epoch's mean below 0.6 x the first's; with label
    smoothing 0.1 the least possible loss is 0.35), and validation top-1 reaches 0.9 against a chance of
    0.25. A trainer that learns nothing is at chance: its correct count on 96 clips is Binomial(96, 1/4),
    which reaches 87 with probability < 1e-30."""
    from video_swin.training.data import ArraySource
    from video_swin.training.train import TrainConfig, train

    x, y = _easy_clips(128, seed=0)
    vx, vy = _easy_clips(96, seed=1)
    config = TrainConfig(
        out=str(tmp_path / "run"), arch="test-nano", epochs=10, batch_size=8, lr=5e-3, warmup_epochs=0.25,
        weight_decay=0.05, label_smoothing=0.1, head_dropout=0.0, clip_len=8, frame_interval=1, short_side=32,
        crop_size=32, random_crop=False, flip=False, mean=(127.5,) * 3, std=(64.0,) * 3, test_views="1x1",
        workers=1, seed=0,
    )
    history = train(config, source=ArraySource(x, y, CLASSES), val_source=ArraySource(vx, vy, CLASSES),
                    log=lambda *a: None)["history"]
    losses = [h["train_loss"] for h in history]
    assert len(history) == 10 and losses[-1] < 0.6 * losses[0], losses
    assert binomial_sf(86, 96, 0.25) < 1e-30
    assert history[-1]["val_n"] == 96 and history[-1]["val_top1"] >= 0.9, history[-1]
