"""`kenprune search` bad inputs: one line on stderr, exit 2, before any model is loaded."""
import pytest

from kenprune.cli import main


@pytest.mark.parametrize("argv,message", [
    (["--sparsity", "1.0"], "--sparsity must be in [0, 1)"),
    (["--sparsity", "0.9", "--lambda", "0.2"], "lambda 0.2 is too large for target sparsity 0.9"),
    (["--workers", "2", "--ray-address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--eval-data", "wiki:test"], "must not see a test split"),
    (["--method", "nope"], "unknown method 'nope'"),
])
def test_bad_search_input_is_one_line(argv, message, capsys, tmp_path):
    assert main(["search", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and err.startswith("kenprune: error:")


def test_corrupt_checkpoint_is_one_line(capsys, tmp_path):
    (tmp_path / "checkpoint.json").write_text('{"version": 1, "state": [')
    assert main(["search", "--out", str(tmp_path), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint" in err and "corrupt" in err and err.count("\n") == 0
