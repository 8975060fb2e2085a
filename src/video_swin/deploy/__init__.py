"""Putting a preset into production: `export` (SavedModel, TFLite, ONNX), `serve` (an HTTP service with a
web page, `video-swin serve`) and `batch` (a whole video archive into a resumable Parquet file, in this
process or on a Ray cluster)."""
