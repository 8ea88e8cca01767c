"""`kenprune prune --allocation`: bad specs fail in one line before the model loads."""
import pytest

from kenprune.cli import main


@pytest.mark.parametrize("spec,message", [
    ("dsa:abslog|variance|atan", "unknown reduction operation 'variance'"),
    ("lumpy", "unknown allocation 'lumpy'; choose one of: uniform, global, er, er-plus, owl, dsa"),
    ("owl:k=3", "bad option 'k=3'"),
    ("nothere.json", "allocation file nothere.json does not exist"),
])
def test_bad_allocation_is_one_line(spec, message, capsys):
    assert main(["prune", "--allocation", spec, "--sparsity", "0.6"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


def test_allocation_with_nm_pattern_is_refused(capsys):
    assert main(["prune", "--allocation", "owl", "--pattern", "2:4"]) == 2
    assert "--allocation spreads one --sparsity" in capsys.readouterr().err
