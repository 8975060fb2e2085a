"""Putting a preset into production: `export` (SavedModel, TFLite, ONNX) and `serve` (an HTTP service with a
web page, `video-swin serve`)."""
