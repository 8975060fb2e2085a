"""Checkpoints users bring: reading `.pth` / `.safetensors` without PyTorch (and without executing
anything), the mapping of official and torchvision names onto our variables, conversion into a preset,
and inflation of 2D ImageNet Swin checkpoints.

* `checkpoint_io` - `read_tensors` (format sniffed from the bytes), `.safetensors` via the safetensors package.
* `pth`           - the `.pth` reader: a restricted unpickler that executes nothing.
* `errors`        - `CheckpointError` (one-line messages naming the file).
* `weights`       - official / torchvision names <-> Keras variables, with the layout transposes.
* `convert`       - detection of layout, variant and window; `convert_checkpoint` -> a preset folder.
* `inflate`       - 2D Swin -> 3D backbone preset with the official inflation rules.
"""
