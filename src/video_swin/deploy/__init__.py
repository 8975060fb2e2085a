"""Putting a preset into production: `export` (SavedModel, TFLite, ONNX)."""
