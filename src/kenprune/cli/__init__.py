"""The `kenprune` command: a thin layer over the Python API (same names, same defaults)."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading

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
    "tokens",
    "stats",
    "phase_map",
)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default, unless its text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and "default" not in text and action.default not in (None, False, [])
                and action.default is not argparse.SUPPRESS and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Every command's parser (nested ones too) shows defaults the same way."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="kenprune",
        description="Prune transformer models and prove it with measurements.",
    )
    parser.add_argument("--version", action="version", version=f"kenprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and show tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"kenprune.cli.{name}").register(subparsers)
    return parser


class Stopped(BaseException):
    """A termination signal (SIGTERM from a scheduler, `timeout` or a container stop; SIGHUP from a closed
    terminal), raised where Python runs next so every `finally` removes its temporaries, as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP behave like Ctrl-C while a command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _quiet_third_party() -> None:
    """transformers' load reports, advisory warnings and weight-loading bars stay out of kenprune's
    output unless --verbose (kenprune prints its own progress and one-line summaries)."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _close_progress_bars() -> None:
    """Clear any progress bar a failure left open, so the one-line message starts its own line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _fail(message: str) -> None:
    _close_progress_bars()
    print(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="kenprune: %(message)s")
    if not args.command:
        parser.print_help()
        return 0
    if not args.verbose:
        _quiet_third_party()
    from ..errors import KenpruneError

    try:
        with _stop_on_signals():
            return int(args.func(args) or 0)
    except KenpruneError as exc:
        if args.verbose:
            raise
        _fail(f"kenprune: error: {exc}")
        return 2
    except OSError as exc:  # a full disk, a read-only or vanished folder: the atomic writes left nothing behind
        if args.verbose:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        _fail(f"kenprune: error: {exc.strerror or exc}{where}; nothing half-written was kept")
        return 2
    except KeyboardInterrupt:
        _fail(f"kenprune: interrupted; nothing half-written was kept{_resume_note(args)}")
        return 130
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        _fail(f"kenprune: stopped by {name}; nothing half-written was kept{_resume_note(args)}")
        return 128 + stop.signum


def _resume_note(args: argparse.Namespace) -> str:
    """What an interrupted command keeps to resume from: a search's checkpoint, a streamed prune's blocks."""
    if args.command == "search":
        return " (a search resumes from its checkpoint)"
    out = getattr(args, "out", None)
    if args.command == "prune" and out:
        from ..engine.checkpoint import checkpoint_folder

        folder = checkpoint_folder(out)
        if folder.is_dir():
            return f" ({folder} keeps the finished blocks: the same command resumes from them)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
