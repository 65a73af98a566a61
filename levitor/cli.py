"""The ``levitor`` command. Each layer registers its own subcommands on this one parser (as diffusers' commands
do); what a command does can be done from Python the same way.

One error policy for every command (:func:`run_command`): an expected failure (bad input, missing files or weights,
permissions, devices, a missing optional package, a run that cannot go on) prints one line, ``levitor CMD: error:
...``, the exception's own message with its line breaks folded, and exits with 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from levitor import __version__
from levitor._util.errors import RunError
from levitor.defaults import check_seed

# the layers that have commands, in the order `levitor --help` lists them
COMMAND_MODULES = (
    "levitor.demo",                    # demo, preview
    "levitor.generation.commands",     # generate, vram
    "levitor_widgets.commands",        # studio
    "levitor.training.commands",       # train, precompute, precompute-synthetic
    "levitor.evaluation.commands",     # eval
)
# OSError: FileNotFound, IsADirectory, Permission, weights not found; ImportError: an optional package (Ray,
# CoTracker's) that is not installed, whose message names the pip command; FloatingPointError: a loss that diverged
EXPECTED_ERRORS = (ValueError, OSError, ImportError, FloatingPointError, RunError)


def seed_arg(text: str) -> int:
    """argparse type for --seed: a whole number in 0..2**63-1 (a clear usage error otherwise)."""
    try:
        return check_seed(int(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e) if text.strip().lstrip("-").isdigit() else
                                         f"seed must be a whole number in 0..2**63-1, got {text!r}") from None


def print_warnings(prog: str, warnings) -> None:
    """One line per :class:`levitor.control.lost.ControlWarning` (an object that gets no control points in some
    frames), on stderr beside the errors."""
    for w in warnings:
        print(f"{prog}: warning: {w.message}", file=sys.stderr)


def error_line(e: BaseException) -> str:
    """The one line an expected failure prints: OSErrors name their file (once: levitor's own say it in their
    sentence); a message of several lines (two missing models, a layout) is folded into one."""
    if isinstance(e, OSError) and e.filename and e.strerror and not isinstance(e, FileNotFoundError):
        text = e.strerror if str(e.filename) in e.strerror else f"{e.strerror}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def run_command(prog: str, run, args: argparse.Namespace) -> int:
    """Run a command's function the way the CLI does: expected failures are one message and exit code 2."""
    try:
        return int(run(args) or 0)
    except EXPECTED_ERRORS as e:  # bad input and missing weights: say what to do, no traceback
        print(f"{prog}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="levitor", description="3D-trajectory-controlled image-to-video (LeviTor). `levitor COMMAND --help` "
                                    "for a command's options.")
    parser.add_argument("--version", action="version", version=f"levitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_command(f"levitor {args.command}", args.run, args)


if __name__ == "__main__":
    sys.exit(main())
