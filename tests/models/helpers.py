"""What several model tests share: the small architecture's classifier, random clips, an XLA training step, and
a record of the attention kernel each block took."""

import numpy as np
import tensorflow as tf

import keras
from tests import reference
from video_swin.models import VideoSwinBackbone, VideoSwinClassifier, attention
from video_swin.models.layers import WindowAttention3D

SMALL_ARCH = dict(reference.SMALL_ARCHITECTURE, drop_path_rate=0.0)


def classifier(seed=0, **arch):
    """Built from its own seed: the weights do not depend on which tests ran before."""
    keras.utils.set_random_seed(seed)
    return VideoSwinClassifier(VideoSwinBackbone(**{**SMALL_ARCH, **arch}), num_classes=5)


def clip(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(tuple(shape) + (3,)).astype("float32")


def xla_training_step(model):
    """The gradients of a cross-entropy loss as one XLA function of (x, y)."""

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return tape.gradient(loss, model.trainable_variables)

    return tf.function(step, jit_compile=True)


def record_kernels(monkeypatch):
    """A list that receives (attention layer's path, the facts given to `attention.select_kernel`, its
    `attention.Choice`) for every call of a `WindowAttention3D` from now on (in a trace: once per trace), in
    call order."""
    taken, current = [], []
    call, select = WindowAttention3D.call, attention.select_kernel

    def recording_call(self, x, attention_mask=None, training=None, num_windows=None):
        current.append(self.path)
        try:
            return call(self, x, attention_mask=attention_mask, training=training, num_windows=num_windows)
        finally:
            current.pop()

    def recording_select(**facts):
        choice = select(**facts)
        taken.append((current[-1] if current else None, facts, choice))
        return choice

    monkeypatch.setattr(WindowAttention3D, "call", recording_call)
    monkeypatch.setattr(attention, "select_kernel", recording_select)
    return taken
