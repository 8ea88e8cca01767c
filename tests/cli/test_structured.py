"""`kenprune structured` (its own command and options) and `kenprune recover`, on a tiny Llama folder."""
from __future__ import annotations

import pytest

from kenprune.cli import main
from kenprune.record import read
from tests.structured.conftest import smollm2_tokenizer, tiny_loaded  # noqa: F401  (fixtures)


@pytest.fixture
def tiny_folder(tiny_loaded, tmp_path):  # noqa: F811
    from kenprune.models.loading import save_model

    return save_model(tiny_loaded, tmp_path / "tiny", {})


def test_structured_cli_writes_a_reloadable_model_and_a_record(tiny_folder, tmp_path, capsys):
    import kenprune

    out = tmp_path / "pruned"
    code = main(["structured", "--model", str(tiny_folder), "--out", str(out), "--importance", "taylor",
                 "--ratio", "0.5", "--keep-first", "1", "--calib", "lee:calib", "--nsamples", "2", "--seqlen", "16",
                 "--eval", "lee:test", "--eval-windows", "2", "--eval-seqlen", "32", "--latency-repeats", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "speed-up" in printed and "perplexity lee:test" in printed
    record = read(out)
    d = record.details
    assert record.kind == "structured" and d["parameters_after"] < d["parameters_before"]
    assert record.file("model").bytes > 0
    assert d["latency"]["speedup"]["decode_ideal"] > 1 and not d["uniform_widths"]
    assert record.quality_of("before").value > 0 and record.quality_of("after").value > 0
    assert record.settings["resolved"]["calibration"]["samples"] == 2
    assert kenprune.load(str(out)).model.config.kenprune_block_widths[1]["heads"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "1.0"], "--ratio must be in [0, 1), got 1.0"),
    (["--ratio", "0.9"], "would remove all 3 query heads of each key/value group"),
    (["--importance", "magic"], "unknown importance 'magic'; choose one of: l1, l2, taylor"),
])
def test_bad_structured_input_is_one_line_and_writes_nothing(tiny_folder, tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["structured", "--model", str(tiny_folder), "--out", str(out), "--no-latency", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and err.startswith("kenprune: error:")
    assert not out.exists()


def test_prune_points_structured_users_to_their_command(capsys):
    assert main(["prune", "--method", "structured"]) == 2
    assert "kenprune structured" in capsys.readouterr().err


def test_recover_command_trains_merges_and_records_perplexity(tiny_folder, tmp_path, capsys):
    out = tmp_path / "recovered"
    code = main(["recover", "--model", str(tiny_folder), "--out", str(out), "--data", "lee:calib", "--steps", "2",
                 "--seqlen", "16", "--eval", "lee:test", "--eval-seqlen", "32", "--eval-windows", "2"])
    assert code == 0
    record = read(out)
    assert record.kind == "recover" and record.quality_of("before").value > 0 and record.quality_of("after").value > 0
    assert "perplexity lee:test" in capsys.readouterr().out


def test_recover_bad_input_is_one_line(tiny_folder, tmp_path, capsys):
    assert main(["recover", "--model", str(tiny_folder), "--out", str(tmp_path / "r"), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "kenprune: error: --steps must be >= 1, got 0" and not (tmp_path / "r").exists()
