"""Using a trained model on videos: `classify` (ranked labels with the published test protocol)."""
