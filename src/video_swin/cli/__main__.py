"""`python -m video_swin.cli ...`: the same as the `video-swin` executable."""

from video_swin.cli.app import console

console()
