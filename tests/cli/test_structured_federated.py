"""`kenprune structured --clients`: the record holds each client's identity and weight, never its text; the
report and summary show per-client agreement; what cannot be federated is refused in one line."""
import json

import pytest

from kenprune.cli import main
from kenprune.record import read
from kenprune.report.runs import read_run

CALIB = ["--nsamples", "2", "--seqlen", "32"]
QUICK = ["--no-latency", "--eval-windows", "2", "--eval-seqlen", "32", "--eval", "wiki:test"]


def test_structured_with_clients_records_identities_and_agreement_not_text(tiny_llama_folder, tmp_path, capsys):
    from transformers import AutoTokenizer

    from kenprune.data.windows import calibration_windows

    out = tmp_path / "fed"
    assert main(["structured", "--model", str(tiny_llama_folder), "--importance", "taylor", "--ratio", "0.25",
                 "--clients", "wiki,lee", "--weighting", "equal", *CALIB, *QUICK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "selection agreement with the merged selection" in printed and "wiki:calib 64 tokens" in printed
    record = read(out)
    fed = record.details["federated"]
    assert fed["mode"] == "one-round" and fed["weighting"] == "equal" and fed["tokens"] == 128
    assert [c["data"] for c in fed["clients"]] == ["wiki:calib", "lee:calib"]
    assert [c["weight"] for c in fed["clients"]] == [0.5, 0.5]
    assert all(len(c["windows_sha256"]) == 64 and c["seqlen"] == 32 and c["windows"] == 2 for c in fed["clients"])
    assert set(fed["agreement"]["clients"]) == {"wiki:calib", "lee:calib"}
    assert record.details["calibration"]["data"] == "wiki:calib,lee:calib"
    assert record.settings["resolved"]["federated"]["clients"] == ["wiki", "lee"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_folder)
    text = (out / "run.json").read_text()
    for data in ("wiki:calib", "lee:calib"):  # no client text (any of its decoded windows) reaches the record
        window = calibration_windows(tokenizer, data, nsamples=2, seqlen=32, seed=0)[0]
        snippet = tokenizer.decode(window[8:16]).strip()
        assert len(snippet) > 8 and snippet not in text and json.dumps(snippet)[1:-1] not in text
    from kenprune.jobs.structured import structured_prune  # kenprune.structured: shadowed by the subpackage here
    from kenprune.settings import Calibration, Evaluation, FederatedSettings

    api = structured_prune(str(tiny_llama_folder), tmp_path / "api", importance="taylor", ratio=0.25,
                           latency=False, calibration=Calibration(samples=2, seqlen=32),
                           evaluation=Evaluation(data="wiki:test", seqlen=32, windows=2), progress=False,
                           federated=FederatedSettings(clients=("wiki", "lee"), weighting="equal"))
    assert api.details["federated"]["clients"] == fed["clients"]  # the CLI and the API say the same
    assert api.details["widths_after"] == record.details["widths_after"]
    summary = read_run(out).summary
    assert summary["weighting"].startswith("equal") and summary["client wiki:calib"].startswith("wiki:calib: 2 windows")
    assert "same decisions" in summary["selection agreement, lee:calib alone vs merged"]


@pytest.mark.parametrize("argv, message", [
    (["--importance", "l1", "--clients", "wiki,lee"], "nothing to federate"),
    (["--importance", "polarization", "--steps", "2", "--clients", "wiki"], "trains gates"),
    (["--importance", "taylor", "--clients", "wiki", "--workers", "2"], "runs its clients in this process"),
    (["--importance", "taylor", "--clients", "wiki", "--stability", "2"], "--stability with --clients"),
    (["--importance", "taylor", "--stats", "nowhere/"], "hold element-wise statistics"),
    (["--importance", "taylor", "--clients", "wiki", "--weighting", "equal", "--calib", "wiki", "--nsamples", "0"],
     "--nsamples"),
])
def test_what_cannot_be_federated_is_refused_in_one_line(tiny_llama_folder, tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    code = main(["structured", "--model", str(tiny_llama_folder), "--ratio", "0.25", *argv, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith("kenprune: error:"), err
    assert not out.exists()
