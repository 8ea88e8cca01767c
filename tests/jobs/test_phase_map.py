"""The phase-map job on a tiny causal LM: every cell measured, regimes named, the report draws both maps."""
import pytest

from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.jobs.phase_map import phase_map
from kenprune.record import read
from kenprune.report.build import write_report


def test_phase_map_cells_and_report(tiny_llama_folder, tmp_path, capsys):
    out = tmp_path / "pm"
    assert main(["phase-map", "--model", str(tiny_llama_folder), "--data", "lee", "--steps", "0,2",
                 "--densities", "0.9,0.5", "--method", "wanda", "--recover-steps", "1", "--batch-size", "2",
                 "--seqlen", "32", "--eval-examples", "2", "--alphas", "3", "--calib-samples", "2",
                 "--out", str(out)]) == 0
    record = read(out)
    d = record.details
    assert record.kind == "phase-map" and d["temperatures"] == ["0 steps", "2 steps"]
    assert len(d["cells"]) == 4 and d["quality_metric"] == "perplexity"
    for cell in d["cells"]:
        assert len(cell["losses"]) == 3 and cell["barrier"] >= 0 and cell["regime"] in ("I", "II-A", "II-B")
        assert cell["losses"][-1] == pytest.approx(cell["dense_loss"], rel=1e-5)  # alpha 1 is the parent
        assert cell["losses"][0] == pytest.approx(cell["loss"], rel=1e-5)  # alpha 0 is the pruned model
    assert len(d["training"]["loss_curve"]) == 2
    assert "0 steps" in capsys.readouterr().out
    page = write_report([out], tmp_path / "r.html")
    assert "phase-quality" in page.read_text() and "phase-barrier" in page.read_text()


def test_bad_axes_are_refused(tiny_llama_folder):
    with pytest.raises(KenpruneError, match="--densities"):
        phase_map(str(tiny_llama_folder), densities=(1.5,), progress=False)
    with pytest.raises(KenpruneError, match="distinct"):
        phase_map(str(tiny_llama_folder), steps=(1, 1), progress=False)
