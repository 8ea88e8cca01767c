"""The CLI: one-line errors with a non-zero exit and no traceback; results printed and written."""
import json
import subprocess
import sys

import pytest

from kenprune.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["eval", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["eval", "--model", "./missing/folder"], "no such model folder: ./missing/folder"),
    (["eval", "--data", "wiki:nosplit"], "unknown split 'nosplit'"),
    (["eval", "--data", "nocorpus:test"], "unknown corpus 'nocorpus'"),
    (["eval", "--data", "text:/no/such/file.txt"], "no such text file or folder: /no/such/file.txt"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kenprune: error: ") and message in lines[0]
    assert "Traceback" not in err


def test_empty_text_and_too_long_seqlen(capsys, tmp_path, smollm2):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run_cli(capsys, "eval", "--data", f"text:{empty}", "--out", str(tmp_path / "r.json"))
    assert code == 2 and "no text" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "eval", "--seqlen", "100000", "--out", str(tmp_path / "r.json"))
    assert code == 2 and "exceeds smollm2-135m's context of 8192" in err
    assert not (tmp_path / "r.json").exists()


def test_eval_prints_perplexity_and_writes_json(capsys, tmp_path, smollm2):
    out_path = tmp_path / "eval"
    code, out, _ = run_cli(capsys, "eval", "--model", "smollm2-135m", "--data", "lee:test",
                           "--seqlen", "128", "--max-windows", "2", "--out", str(out_path))
    assert code == 0 and "perplexity" in out and str(out_path) in out
    record = json.loads((out_path / "run.json").read_text())
    quality = record["quality"][0]
    assert record["kind"] == "eval" and quality["metric"] == "perplexity" and quality["data"] == "lee:test"
    assert quality["protocol"]["windows"] == 2 and quality["protocol"]["seqlen"] == 128
    assert quality["value"] > 1 and record["provenance"]["versions"]["transformers"]


def test_eval_takes_a_run_folder_for_its_model(capsys, tmp_path, tiny_llama_folder):
    import kenprune.record as records

    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, "prune", "--model", str(tiny_llama_folder), "--method", "magnitude",
                         "--out", str(run))
    assert code == 0 and records.read(run).file("model").path == "model"
    code, out, err = run_cli(capsys, "eval", "--model", str(run), "--data", "lee:test", "--seqlen", "64",
                             "--max-windows", "1")
    assert code == 0 and "perplexity" in out, err


def test_listing_commands(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "smollm2-135m" in out and "minilm-l6" in out
    code, out, _ = run_cli(capsys, "data")
    assert code == 0 and "wiki" in out and "pang-lee" in out and "calib" in out


def test_console_script_reports_errors_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "kenprune", "eval", "--model", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("kenprune: error: unknown model")
    assert "Traceback" not in proc.stderr


def test_an_interrupted_streamed_prune_names_the_checkpoint_it_resumes_from(tmp_path):
    import argparse

    from kenprune.cli import _resume_note

    out = tmp_path / "big"
    args = argparse.Namespace(command="prune", out=str(out))
    assert _resume_note(args) == ""  # an in-memory prune keeps nothing
    (tmp_path / "big.checkpoint").mkdir()
    assert "big.checkpoint keeps the finished blocks" in _resume_note(args)
    assert "resumes from its checkpoint" in _resume_note(argparse.Namespace(command="search", out=None))
