"""The `kenprune` command: a thin layer over the Python API (same names, same defaults)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# One module per command in kenprune.cli; adding a command means adding one line here.
COMMAND_MODULES = (
    "listing",
    "eval",
    "demo",
    "report",
    "viz",
    "finetune",
    "ken",
    "recover",
    "prune",
    "search",
    "structured",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="kenprune",
        description="Prune transformer models and prove it with measurements.",
    )
    parser.add_argument("--version", action="version", version=f"kenprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and show tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"kenprune.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="kenprune: %(message)s")
    if not args.command:
        parser.print_help()
        return 0
    from ..errors import KenpruneError

    try:
        return int(args.func(args) or 0)
    except KenpruneError as exc:
        if args.verbose:
            raise
        print(f"kenprune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kenprune: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
