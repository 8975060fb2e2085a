"""Video Swin Transformer in Keras 3, numerically identical to the PyTorch original."""

__version__ = "0.1.0"
