"""The ``napari-dustrack`` command (contract in DESIGN.md).

Each subcommand lives in ``commands/<name>.py``: its options (``add_arguments``) and its work
(``run(args) -> None``); this module parses and checks the arguments (numbers finite and in
range, destinations writable) before any work starts, and is the one place where a user's bad
input becomes a one-line message (``<file>: <problem>``) and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import DustrackError, user_message

# The subcommands in the order --help lists them. Each ``commands/<name>.py`` declares ``HELP``,
# ``add_arguments(parser)``, ``run(args)`` and, when it writes one, ``DESTINATION`` = (option, is
# a folder), checked before the work starts.
COMMANDS = (
    "propagate",
    "train",
    "predict",
    "smooth",
    "finalize",
    "batch",
    "simulate",
    "measure",
    "export",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block): ``<prog>: error: <problem>``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def _command(name: str):
    return importlib.import_module(f"napari_dustrack.commands.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``only``, that one's options alone are declared (the
    others' modules, and what they import, are not loaded to parse one command line)."""
    parser = _Parser(
        prog="napari-dustrack",
        description="Point tracking in ultrasound cines: propagate keyframes, train and run a "
        "U-Net heatmap model, smooth tracks, measure.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        module = _command(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only).parse_args(argv)
    module = _command(args.command)
    try:
        _check_destination(args)
        module.run(args)
    except (DustrackError, OSError) as exc:
        print(f"napari-dustrack {args.command}: error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-dustrack {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _check_destination(args) -> None:
    from .io.atomic import check_destination

    destination = getattr(_command(args.command), "DESTINATION", None)
    if destination is not None:
        option, folder = destination
        check_destination(getattr(args, option), folder=folder, try_write=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
