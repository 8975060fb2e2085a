"""`video-swin` command line: the parser, and the one-line error contract around every command.

Each command lives in the module of its concern (`checkpoints`, `zoo`, `inference`, `timeline`,
`explain`, `deploy`, `serve`, `training`, `checks`, `demo`), registered by `add_subcommands(sub)`, and
is a thin layer over a Python API function.
Modules import their heavy dependencies only when a command runs: `verify` must import torch before
TensorFlow, and `--help` should not wait for TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

COMMAND_MODULES = ("checks", "checkpoints", "zoo", "inference", "timeline", "explain", "demo", "deploy", "training",
                   "serve")


class CommandError(Exception):
    """A failure already explained in one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with the one-line error contract: a usage mistake is `video-swin: error: ...` on one line
    (argparse would print its usage block first), exit status 2 as argparse's. Subcommand parsers inherit
    the class."""

    def error(self, message):
        self.exit(2, f"video-swin: error: {self.prog}: {one_line(message)} (see `{self.prog} --help`)\n")


def add_precision_argument(p):
    """`--precision`, shared by the commands that run a preset's model for inference."""
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="float32 (the reference), or bfloat16 matmuls where the CPU has AVX512_BF16 / AMX and "
                   "oneDNN (else float32 runs, and a line on stderr says why)")


def say_precision_notice(notice):
    """The one line saying that bfloat16 was asked for and float32 runs (not an error: the command goes on)."""
    if notice:
        print(f"video-swin: note: {notice}", file=sys.stderr, flush=True)


RAY_OPTIONS = ("address", "actors", "cpus_per_actor", "gpus_per_actor")


def add_engine_arguments(group):
    """--engine and the Ray cluster's options, shared by `classify --out` and `features`."""
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: decoding in Ray tasks, the model in an actor pool")
    group.add_argument("--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: a new local cluster)")
    group.add_argument("--actors", type=positive_int, help="model actors (default: GPUs / --gpus-per-actor, or 3/4 of the CPUs)")
    group.add_argument("--cpus-per-actor", type=float, help="CPUs reserved for, and threads used by, each actor (default 1)")
    group.add_argument("--gpus-per-actor", type=float, help="GPUs per actor where the cluster has GPUs (e.g. 1 or 0.5)")


def refuse_options(args, options, applies_to):
    for name in options:
        if getattr(args, name) not in (None, False):
            raise CommandError(f"--{name.replace('_', '-')} applies to {applies_to}")


def positive_int(text):
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser():
    import importlib

    parser = OneLineParser(prog="video-swin", description="Video Swin Transformer in Keras 3")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"video_swin.cli.{name}").add_subcommands(sub)
    return parser


def one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def console():
    """The `video-swin` executable: `main` in a process whose stderr carries only our own lines.

    TensorFlow's native logging (absl, oneDNN, XLA) and library warnings would otherwise break the
    one-line error contract on some CPUs (AVX512 servers, where oneDNN is on). `VIDEO_SWIN_DEBUG=1`
    keeps everything, with tracebacks.
    """
    if not os.environ.get("VIDEO_SWIN_DEBUG"):
        from video_swin import runtime

        runtime.quiet_native_stderr()
        warnings.simplefilter("ignore")
    sys.exit(main())


def main(argv=None):
    """Runs one command; returns the exit status. Errors are one line on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    debug = bool(os.environ.get("VIDEO_SWIN_DEBUG"))
    from video_swin import runtime

    runtime.configure()
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("video-swin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line, never a traceback
        if debug:
            raise
        message = one_line(exc)
        if not isinstance(exc, (ValueError, OSError, RuntimeError, CommandError)):
            message = f"unexpected {type(exc).__name__}: {message} (VIDEO_SWIN_DEBUG=1 shows a traceback)"
        print(f"video-swin: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    console()
