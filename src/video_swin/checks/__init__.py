"""Our model against the independent PyTorch reference (torchvision's `swin3d_*`): `verify` compares the
numbers, `bench` the speed and memory, side by side in one run."""
