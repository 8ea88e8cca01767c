"""Every option of every command explains itself, and `kenprune models` agrees with the README."""
import argparse
from pathlib import Path

import pytest

from kenprune.cli import build_parser, main

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(parser, prefix=()):
    """(command words, parser) for every (sub)command, nested ones such as `ken apply` included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_found():
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"models", "data", "eval", "prune", "search", "ken", "ken apply", "report", "viz", "structured",
            "recover", "finetune", "demo"} <= names


@pytest.mark.parametrize("words,parser", COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_option_has_help(words, parser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help and action.help.strip() and action.help is not argparse.SUPPRESS, \
            f"kenprune {' '.join(words)}: {'/'.join(action.option_strings) or action.dest} has no help"


@pytest.mark.parametrize("words,parser", COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_help_shows_defaults(words, parser, capsys):
    with pytest.raises(SystemExit) as done:
        main([*words, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        if not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS) \
                or action.nargs == 0:  # flags: their help says what they do
            continue
        assert "default" in action.help or str(action.default) in text, \
            f"kenprune {' '.join(words)} {action.option_strings[0]}: default {action.default!r} not shown"


def test_models_listing_gives_the_readme_install_command_and_the_cache_rule(capsys, monkeypatch, tmp_path):
    from kenprune.models.loading import MODELS

    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path / "cache"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    readme = README.read_text()
    optional = [entry.value for entry in MODELS.entries() if entry.value.optional]
    assert optional
    for spec in optional:
        assert f"optional: {spec.install}" in out
        assert f"`{spec.install}`" in readme
    assert str(tmp_path / "cache") in out
    for words in ("$KENPRUNE_CACHE", "$XDG_CACHE_HOME/kenprune", "~/.cache/kenprune"):
        assert words in out and words in readme

