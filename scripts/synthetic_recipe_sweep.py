"""GPU sweep: which small Video Swin recipe learns the synthetic motion set within a CPU-sized step budget.

Run on the lent GPU machine (Keras on JAX; no TensorFlow there), from the repository root:
    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false SWEEP_SECONDS=230 python3 scripts/synthetic_recipe_sweep.py
CONFIGS=name,name picks configurations, PRE=plain|clipstd|tmean the input normalisation (set per name
prefix cs_/tm_), NTRAIN the number of training clips. The logs of the two runs of 2026-11-27 (H100) are
benchmarks/results/2026-11-27/synthetic_recipe_sweep_h100_2026-11-27.log: every configuration stayed at chance
(12.5 %) for 1000-3000 steps of 16 clips, which is why the shipped preset has the background-difference
input stem (scripts/train_synthetic.py, docs/training.md).
"""
import json, os, sys, time
os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np
sys.path.insert(0, "src")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras
from video_swin.data import synthetic
synthetic._has_libx264 = lambda: True  # compress=False never encodes; PyAV is not on the GPU image
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier
from train_synthetic import SYMMETRIES

BUDGET = float(os.environ.get("SWEEP_SECONDS", "240"))
t_start = time.time()
t0 = time.time()
X, Y = synthetic.generate_arrays(int(os.environ.get("NTRAIN", "8000")), seed=0, randomize=True, workers=16)
VX, VY = synthetic.generate_arrays(800, seed=1, randomize=True, workers=16)
print(f"data {len(X)}+{len(VX)} in {time.time()-t0:.0f}s", flush=True)
SYM = [np.array(SYMMETRIES[k]) for k in ("hflip", "vflip", "transpose", "reverse")]

def augment(x, y, rng):
    x = x.copy(); y = y.copy()
    for i in range(len(x)):
        if rng.random() < .5: x[i] = x[i][:, :, ::-1]; y[i] = SYM[0][y[i]]
        if rng.random() < .5: x[i] = x[i][:, ::-1]; y[i] = SYM[1][y[i]]
        if rng.random() < .5: x[i] = x[i].transpose(0, 2, 1, 3); y[i] = SYM[2][y[i]]
        if rng.random() < .5: x[i] = x[i][::-1]; y[i] = SYM[3][y[i]]
    return x, y

MODE = os.environ.get("PRE", "plain")
def norm(a):
    a = (a.astype(np.float32) - 127.5) / 64.0
    if MODE == "clipstd":
        m = a.mean(axis=(1, 2, 3), keepdims=True); sd = a.std(axis=(1, 2, 3), keepdims=True)
        return (a - m) / (sd + 1e-3)
    if MODE == "tmean":
        return a - a.mean(axis=1, keepdims=True)
    return a
VXn = norm(VX)

def run(name, arch, steps, lr, wd=0.05, batch=16, warm=0.05, ls=0.1, seed=0):
    keras.utils.set_random_seed(seed)
    bb = VideoSwinBackbone(**arch, drop_path_rate=0.0)
    m = VideoSwinClassifier(bb, num_classes=8, head_dropout=0.0)
    sched = keras.optimizers.schedules.CosineDecay(0.0, steps - int(warm * steps), warmup_target=lr, warmup_steps=int(warm * steps))
    opt = keras.optimizers.AdamW(sched, weight_decay=wd)
    m.compile(opt, keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ls), metrics=["accuracy"], jit_compile=True)
    rng = np.random.default_rng(seed)
    def gen():
        while True:
            idx = rng.integers(0, len(X), batch)
            x, y = augment(X[idx], Y[idx], rng)
            yield norm(x), keras.utils.to_categorical(y, 8)
    t = time.time(); out = {"name": name, "arch": arch, "lr": lr, "wd": wd, "steps": steps, "params": m.count_params(), "val": []}
    chunk = max(steps // 4, 1)
    g = gen()
    for k in range(4):
        h = m.fit(g, steps_per_epoch=chunk, epochs=1, verbose=0)
        p = np.concatenate([np.asarray(m.predict_on_batch(VXn[i:i + 200])) for i in range(0, len(VXn), 200)])
        acc = float((p.argmax(1) == VY).mean())
        out["val"].append([chunk * (k + 1), round(float(h.history["loss"][-1]), 3), round(acc, 3)])
        print(name, out["val"][-1], f"{time.time()-t:.0f}s", flush=True)
        if time.time() - t_start > BUDGET: break
    out["seconds"] = round(time.time() - t, 1)
    print("RESULT", json.dumps(out), flush=True)

small = dict(embed_dim=48, depths=(2, 2), num_heads=(3, 6), window_size=(4, 4, 4), patch_size=(4, 8, 8))
fine = dict(embed_dim=48, depths=(2, 2), num_heads=(3, 6), window_size=(4, 4, 4), patch_size=(2, 4, 4))
mid = dict(embed_dim=64, depths=(2, 2), num_heads=(4, 8), window_size=(4, 4, 4), patch_size=(2, 8, 8))
three = dict(embed_dim=32, depths=(1, 2, 1), num_heads=(2, 4, 8), window_size=(4, 4, 4), patch_size=(2, 4, 4))
configs = [
    ("cs_small_lr1e-3", small, 2000, 1e-3, {}),
    ("cs_small_lr3e-3", small, 2000, 3e-3, {}),
    ("small_lr1e-3", small, 3000, 1e-3, {}),
    ("tm_small_lr1e-3", small, 2000, 1e-3, {}),
    ("small_lr3e-3", small, 3000, 3e-3, {}),
    ("mid_lr1e-3", mid, 3000, 1e-3, {}),
    ("small_lr3e-4_wd0", small, 3000, 3e-4, {"wd": 0.0, "ls": 0.0}),
    ("fine_lr1e-3", fine, 3000, 1e-3, {}),
    ("three_lr2e-3", three, 3000, 2e-3, {}),
]
which = os.environ.get("CONFIGS")
for name, arch, steps, lr, kw in configs:
    if which and name not in which.split(","): continue
    if time.time() - t_start > BUDGET: print("budget spent; skipped", name); continue
    os.environ["PRE"] = "clipstd" if name.startswith("cs_") else ("tmean" if name.startswith("tm_") else "plain")
    MODE = os.environ["PRE"]; VXn = norm(VX)
    try:
        run(name, arch, steps, lr, **kw)
    except Exception as exc:
        print("FAILED", name, type(exc).__name__, str(exc)[:300], flush=True)
