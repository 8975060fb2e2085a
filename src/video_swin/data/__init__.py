"""Video in, model input out: decoding, frame sampling, the test protocol's preprocessing, class-name
lists, and the synthetic motion data (two independent generators).

* `video`      - decoding with PyAV, probing, streams (files, stdin, URLs).
* `sampling`   - the official frame sampling (dense clips, SSv2 uniform).
* `preprocess` - resize, crops and normalisation of the test protocol (`Protocol`).
* `labels`     - Kinetics-400/600 and SSv2 class names.
* `synthetic`, `second_generator` - the synthetic motion dataset and an independent generator;
  `synthetic.write_video` / `encode_video` write MP4s (also used by the renderers).

Nothing here imports Keras or TensorFlow at import time.
"""
