"""Using a trained model on videos: `classify` (ranked labels with the published test protocol) and
`explain` (heat maps of where the model finds the evidence, drawn on the video)."""
