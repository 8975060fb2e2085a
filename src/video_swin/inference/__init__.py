"""Using a trained model on videos: `classify` (ranked labels with the published test protocol),
`timeline` (what happens when in a long video or a stream; `timeline_render` draws it), `features`
(backbone features per window) and `explain` (heat maps of where the model finds the evidence;
`explain_render` draws them on the video)."""

