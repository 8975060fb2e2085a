"""The `video-swin` command line: `app` holds the parser and the error contract; each other module the
commands of one concern."""

from video_swin.cli.app import CommandError, console, main

__all__ = ["CommandError", "console", "main"]
