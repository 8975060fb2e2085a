"""Putting a preset into production: `export` (SavedModel, TFLite, ONNX) and `batch` (a whole video archive into a
resumable Parquet file, in this process or on a Ray cluster)."""
