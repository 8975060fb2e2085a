"""The Video Swin classifier: a backbone, mean pooling and a linear head."""

from __future__ import annotations

import keras

from video_swin.models.backbone import VideoSwinBackbone, check_pixels
from video_swin.models.inference import XlaInference, chain
from video_swin.models.layers import PACKAGE

@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoSwinClassifier(XlaInference, keras.Model):
    """Backbone, mean over all positions, dropout, linear head: (B, T, H, W, 3) -> (B, classes) logits."""

    def __init__(self, backbone, num_classes=400, head_dropout=0.5, **kwargs):
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        inputs = keras.Input(shape=(None, None, None, 3), name="pixels")
        x = backbone(inputs)
        x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
        x = keras.layers.Dropout(head_dropout, name="head_dropout")(x)
        logits = keras.layers.Dense(num_classes, name="head")(x)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head_dropout = float(head_dropout)

    def __call__(self, x, *args, **kwargs):
        check_pixels(x)
        return super().__call__(x, *args, **kwargs)

    def _inference_segments(self):
        """The backbone's segments, the last followed by the pooling and the head."""
        if not isinstance(self.backbone, VideoSwinBackbone):
            return super()._inference_segments()
        segments = self.backbone._inference_segments()
        head = chain([self.get_layer("pool"), self.get_layer("head_dropout"), self.get_layer("head")])
        last = segments[-1]
        segments[-1] = lambda x: head(last(x))
        return segments

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "head_dropout": self.head_dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
