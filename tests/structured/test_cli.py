"""CLI paths: `prune --method structured` glue (via a parser with prune's own options) and `kenprune recover`."""
from __future__ import annotations

import argparse
import json

import pytest

from kenprune.cli import main
from kenprune.structured import cli as structured_cli


def _prune_parser() -> argparse.ArgumentParser:
    """The options `kenprune prune` owns, plus the structured ones, as the lead wires them."""
    parser = argparse.ArgumentParser(prog="kenprune prune")
    for flag, default in (("--model", "smollm2-135m"), ("--out", None), ("--calib", "wiki:calib"),
                          ("--eval", None), ("--method", "structured")):
        parser.add_argument(flag, default=default)
    for flag, default in (("--nsamples", 10), ("--seqlen", 128), ("--seed", 0)):
        parser.add_argument(flag, type=int, default=default)
    structured_cli.add_arguments(parser)
    return parser


@pytest.fixture
def tiny_folder(tiny_loaded, tmp_path):
    from kenprune.models.loading import save_model

    return save_model(tiny_loaded, tmp_path / "tiny", {})


def test_structured_prune_cli_writes_a_reloadable_model_and_a_report(tiny_folder, tmp_path, capsys):
    import kenprune

    out = tmp_path / "pruned"
    args = _prune_parser().parse_args(["--model", str(tiny_folder), "--out", str(out), "--importance", "taylor",
                                       "--ratio", "0.5", "--keep-first", "1", "--calib", "lee:calib",
                                       "--nsamples", "2", "--seqlen", "16", "--eval", "lee:test",
                                       "--latency-repeats", "1"])
    args.eval_windows, args.eval_seqlen = 2, 32  # evaluation options `prune` owns
    assert structured_cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "speed-up" in printed and "perplexity lee:test" in printed
    report = json.loads((out / "kenprune-report.json").read_text())
    assert report["parameters_after"] < report["parameters_before"] and report["file_bytes"] > 0
    assert report["latency"]["speedup"]["decode_ideal"] > 1 and not report["uniform_widths"]
    assert kenprune.load(str(out)).model.config.kenprune_block_widths[1]["heads"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "1.0"], "--ratio must be in [0, 1), got 1.0"),
    (["--ratio", "0.9"], "would remove all 3 query heads of each key/value group"),
    (["--importance", "magic"], "unknown importance 'magic'; choose one of: l1, l2, taylor"),
])
def test_bad_structured_input_is_one_line_and_writes_nothing(tiny_folder, tmp_path, argv, message):
    from kenprune.errors import KenpruneError

    out = tmp_path / "never"
    args = _prune_parser().parse_args(["--model", str(tiny_folder), "--out", str(out), "--no-latency", *argv])
    with pytest.raises(KenpruneError) as error:
        structured_cli.run(args)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_recover_command_trains_merges_and_reports_perplexity(tiny_folder, tmp_path, capsys):
    out = tmp_path / "recovered"
    code = main(["recover", "--model", str(tiny_folder), "--out", str(out), "--data", "lee:calib", "--steps", "2",
                 "--seqlen", "16", "--eval", "lee:test", "--eval-seqlen", "32", "--max-windows", "2"])
    assert code == 0
    report = json.loads((out / "kenprune-report.json").read_text())
    assert report["perplexity"]["before"] > 0 and report["perplexity"]["after"] > 0
    assert "perplexity lee:test" in capsys.readouterr().out


def test_recover_bad_input_is_one_line(tiny_folder, tmp_path, capsys):
    assert main(["recover", "--model", str(tiny_folder), "--out", str(tmp_path / "r"), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "kenprune: error: --steps must be >= 1, got 0" and not (tmp_path / "r").exists()
