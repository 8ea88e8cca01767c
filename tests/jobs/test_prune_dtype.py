"""The compute dtype is in the record, the CLI's output and the report; a bf16 evaluation is marked as such."""
import json

from kenprune.cli import main
from kenprune.record import read


def test_bf16_calibration_and_evaluation_are_recorded_and_reported(tmp_path, capsys, tiny_llama_folder):
    out = tmp_path / "bf16"
    code = main(["prune", "--model", str(tiny_llama_folder), "--method", "wanda", "--nsamples", "2", "--seqlen", "64",
                 "--dtype", "bfloat16", "--eval", "wiki:test", "--eval-windows", "1", "--eval-seqlen", "128",
                 "--eval-dtype", "bfloat16", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "compute dtype bfloat16 (as requested)" in printed and "(bfloat16 evaluation)" in printed
    record = read(out)
    precision = record.details["precision"]
    assert precision["dtype"] == "bfloat16" and precision["statistics"] == "float32"
    assert precision["weights"] == "float32" and "avx512_bf16" in precision["hardware"]
    assert record.details["calibration"]["dtype"] == "bfloat16"
    assert record.settings["resolved"]["calibration"]["dtype"] == "bfloat16"
    assert all(q.protocol["dtype"] == "bfloat16" for q in record.quality)
    html = (out / "report.html").read_text()
    assert "bfloat16 evaluation" in html and "compute dtype" in html


def test_the_default_evaluation_stays_float32_and_auto_is_resolved(tmp_path, capsys, tiny_llama_folder):
    out = tmp_path / "auto"
    assert main(["prune", "--model", str(tiny_llama_folder), "--method", "sparsegpt", "--nsamples", "2",
                 "--seqlen", "64", "--eval", "wiki:test", "--eval-windows", "1", "--eval-seqlen", "128",
                 "--no-eval-before", "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    precision = record["details"]["precision"]
    assert precision["requested"] == "auto" and precision["dtype"] in ("float32", "bfloat16", "float16")
    assert precision["reason"].startswith("auto: ")
    assert [q["protocol"]["dtype"] for q in record["quality"]] == ["float32"]
    assert "float32 evaluation" not in (out / "report.html").read_text()
