"""The ``keysync`` command. Each stage registers its own subcommands (see ``COMMAND_MODULES``).

A stage module exposes ``register(subparsers)``, which adds its parsers and sets ``func`` on each; the
handler receives the parsed arguments and returns an exit code. Heavy imports belong inside handlers (and
the stage packages' ``__init__`` import lazily) so that ``keysync --help`` stays fast: a test checks that
building the parser does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import KeySyncError

COMMAND_MODULES = ["keysync.models.commands", "keysync.synth.commands", "keysync.faces.commands", "keysync.bench.commands", "keysync.pipeline.commands", "keysync.train.commands", "keysync.batch.commands", "keysync.app.commands", "keysync.eval.commands"]


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (the problem, then where the options are listed) instead
    of a usage block; still exit code 2. Subparsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keysync", description="Lip synchronisation with KeySync.")
    parser.add_argument("--version", action="version", version=f"keysync {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for sub in subparsers.choices.values():  # every command: how much it says
        if "--quiet" not in sub._option_string_actions:
            sub.add_argument("--quiet", action="store_true", help="only warnings and errors")
        sub.add_argument("--verbose", action="store_true", help="also debugging notes")
    return parser


class _StderrNotes(logging.Handler):
    """The stages' log on whatever ``sys.stderr`` is when a record is made: progress notes as they are,
    warnings (what a length policy drops, a face that leaves) as ``keysync: ...`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        print(text if record.levelno < logging.WARNING else f"keysync: {text}", file=sys.stderr)


def _show_notes(level: int = logging.WARNING) -> None:
    """Print the ``keysync`` loggers' records from ``level`` up (the library alone leaves logging to its user)."""
    logger = logging.getLogger("keysync")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrNotes) for h in logger.handlers):
        logger.addHandler(_StderrNotes())


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A user error is one line and exit 1; Ctrl-C at any point (parsing, the lazy
    imports inside handlers, the work) is one line and exit 130, never a traceback."""
    name = "keysync"
    _show_notes()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        name += f" {argv[0]}" if argv and not argv[0].startswith("-") else ""
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        name = f"keysync {args.command}"
        _show_notes(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
        return int(args.func(args) or 0)
    except KeySyncError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
