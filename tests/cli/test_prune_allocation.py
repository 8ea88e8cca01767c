"""`kenprune prune --allocation`: bad specs fail in one line before the model loads."""
import pytest

from kenprune.cli import main


@pytest.mark.parametrize("spec,message", [
    ("dsa:abslog|variance|atan", "unknown reduction operation 'variance'"),
    ("lumpy", "unknown allocation 'lumpy'; choose one of: uniform, global, er, er-plus, owl, dsa, "
              "or give a JSON file written by `kenprune search`"),
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


def test_prune_workflow_records_the_allocation(monkeypatch):
    """The workflow resolves the allocation after calibration and prunes each layer at its ratio."""
    import kenprune.data.windows as windows
    import kenprune.models.loading as models
    from kenprune.jobs.prune import prune
    from kenprune.settings import Calibration
    from kenprune.testing import random_windows, tiny_causal_lm

    tiny = models.LoadedModel(tiny_causal_lm("llama", layers=4, hidden=32), None, "tiny", "test", models.CAUSAL_LM)
    monkeypatch.setattr(models, "load_model", lambda name: tiny)
    monkeypatch.setattr(models, "load_tokenizer", lambda name: None)
    monkeypatch.setattr(windows, "windows_for", lambda *a, **k: random_windows(4, 32))
    record = prune("tiny", method="wanda", sparsity=0.6, allocation="dsa:noop|mean|noop|noop",
                   calibration=Calibration(samples=4, seqlen=32), progress=False)
    ratios = record.details["allocation"]["ratios"]
    assert record.details["allocation"]["weighted_mean"] == pytest.approx(0.6, abs=1e-12)
    assert len(set(ratios.values())) > 1
    for layer in record.layers:
        cols = layer.shape[1]
        assert layer.allocated == ratios[layer.name]
        assert layer.value == pytest.approx(int(cols * ratios[layer.name]) / cols)
