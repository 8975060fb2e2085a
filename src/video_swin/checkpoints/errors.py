"""`CheckpointError`, shared by the format readers (`pth`, `checkpoint_io`) so that they import one way."""

from __future__ import annotations

import os


class CheckpointError(ValueError):
    """A checkpoint could not be read or written; the message is a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def fail(path, message: str) -> CheckpointError:
    """The error for `path`: '<path>: <message>', one line."""
    return CheckpointError(f"{os.fspath(path)}: {message}")


def naming(path, exc: CheckpointError) -> CheckpointError:
    """`exc` with `path` in front unless it already names it (the unpickler's stand-ins raise without it)."""
    message = str(exc)
    return exc if message.startswith(f"{os.fspath(path)}: ") else fail(path, message)
