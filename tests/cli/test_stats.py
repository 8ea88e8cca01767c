"""`kenprune stats export|merge` and `kenprune prune --stats/--clients`: files, records, one-line refusals."""
import pytest
import torch

from kenprune.cli import main
from kenprune.record import read
from kenprune.report.runs import read_run

CALIB = ["--nsamples", "2", "--seqlen", "32"]


def _export(model, out, data, method="wanda"):
    assert main(["stats", "export", "--model", str(model), "--method", method, "--calib", data, *CALIB,
                 "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def exported(tiny_llama_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    _export(tiny_llama_folder, root / "a", "wiki:calib")
    _export(tiny_llama_folder, root / "b", "lee:calib")
    return root


def test_export_merge_and_prune_from_statistics(exported, tiny_llama_folder, tmp_path, capsys):
    a = read(exported / "a")
    assert a.kind == "stats" and a.details["clients"][0]["data"] == "wiki:calib"
    assert a.details["clients"][0]["tokens"] == 64 and "text" not in a.details["clients"][0]
    assert main(["stats", "merge", str(exported / "a"), str(exported / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = read(tmp_path / "m")
    assert merged.details["tokens"] == 128 and [c["data"] for c in merged.details["clients"]] == ["wiki:calib",
                                                                                                  "lee:calib"]
    assert read_run(tmp_path / "m").summary["operation"] == "merge"
    common = ["prune", "--model", str(tiny_llama_folder), "--method", "wanda", "--sparsity", "0.5"]
    assert main([*common, "--stats", str(tmp_path / "m"), "--out", str(tmp_path / "p1")]) == 0
    assert main([*common, "--stats", str(exported / "a"), str(exported / "b"), "--out", str(tmp_path / "p2")]) == 0
    one, two = read(tmp_path / "p1"), read(tmp_path / "p2")
    assert one.details["federated"]["mode"] == "dense" and one.details["federated"]["agreement"] is None
    agreement = two.details["federated"]["agreement"]["clients"]
    assert len(agreement) == 2 and all(0.5 < v <= 1 for v in agreement.values())
    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "p1" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "p2" / "model" / "model.safetensors"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # merging at the server = merging in a file
    report = read_run(tmp_path / "p2")
    assert report.summary["federated mode"].startswith("dense: one round")
    assert "mask agreement" in capsys.readouterr().out


def test_prune_in_rounds_records_clients_not_text(tiny_llama_folder, tmp_path):
    assert main(["prune", "--model", str(tiny_llama_folder), "--method", "sparsegpt", "--clients", "wiki,lee",
                 "--weighting", "equal", *CALIB, "--out", str(tmp_path / "r")]) == 0
    d = read(tmp_path / "r").details
    fed = d["federated"]
    assert fed["mode"] == "rounds" and fed["weighting"] == "equal" and fed["executor"] == "sequential"
    assert [c["data"] for c in fed["clients"]] == ["wiki:calib", "lee:calib"]
    assert [c["weight"] for c in fed["clients"]] == [0.5, 0.5]
    assert d["calibration"]["data"] == "wiki:calib,lee:calib" and d["calibration"]["tokens"] == 128
    assert d["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_statistics_of_another_model_or_method_are_refused(exported, tiny_llama_folder, tmp_path, capsys):
    from kenprune.testing import tiny_causal_lm
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    model = tiny_causal_lm("llama", layers=2, vocab=len(AutoTokenizer.from_pretrained(tiny_llama_folder)), seed=5)
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_llama_folder).save_pretrained(other)
    for argv, message in [
        (["--model", str(other), "--method", "wanda"], "was computed on model"),
        (["--model", str(tiny_llama_folder), "--method", "sparsegpt"], "holds norms statistics"),
        (["--model", str(tiny_llama_folder), "--method", "magnitude"], "nothing to federate"),
    ]:
        code = main(["prune", *argv, "--stats", str(exported / "a"), "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    code = main(["prune", "--model", str(tiny_llama_folder), "--clients", "wiki", "--stats", str(exported / "a")])
    assert code != 0 and "not both" in capsys.readouterr().err
