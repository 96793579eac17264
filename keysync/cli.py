"""The ``keysync`` command. Each stage registers its own subcommands (see ``COMMAND_MODULES``).

A stage module exposes ``register(subparsers)``, which adds its parsers and sets ``func`` on each; the
handler receives the parsed arguments and returns an exit code. Heavy imports belong inside handlers so
that ``keysync --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import KeySyncError

COMMAND_MODULES = ["keysync.models.commands", "keysync.synth.commands", "keysync.faces.commands", "keysync.bench.commands", "keysync.pipeline.commands", "keysync.train.commands"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keysync", description="Lip synchronisation with KeySync.")
    parser.add_argument("--version", action="version", version=f"keysync {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeySyncError as err:
        print(f"keysync {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"keysync {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
