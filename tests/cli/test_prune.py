import json

import pytest
import torch

from kenprune.cli import main


def run_and_check(model, out, capsys, blocks, method="wanda", extra=()):
    code = main(["prune", "--model", str(model), "--method", method, "--sparsity", "0.5", "--nsamples", "2",
                 "--seqlen", "64", "--eval", "wiki:test", "--eval-windows", "1", "--out", str(out), *extra])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert len(report["layers"]) == blocks * 7 and all(abs(x["sparsity"] - 0.5) < 1e-3 for x in report["layers"])
    assert report["calibration"] == {**report["calibration"], "data": "wiki:calib", "nsamples": 2, "seqlen": 64}
    assert report["after"]["perplexity"] > 1 and report["before"]["perplexity"] > 1
    assert {"load", "prune", "eval_before", "eval_after"} <= set(report["seconds"])
    files = report["files"]
    assert files["sparse_file_bytes"] < 0.75 * files["dense_folder_bytes"]
    assert report["peak_rss_bytes"] > 0 and "versions" in report
    from kenprune.formats import load_sparse
    from transformers import AutoModelForCausalLM

    dense = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    sparse = load_sparse(out / "model.sparse.safetensors")
    assert all(torch.equal(dense[k].to(sparse[k].dtype), sparse[k]) for k in dense)
    assert "perplexity" in capsys.readouterr().out
    return report


def test_prune_command_end_to_end(tmp_path, capsys, tiny_llama_folder):
    report = run_and_check(tiny_llama_folder, tmp_path / "run", capsys, blocks=2, method="sparsegpt",
                           extra=["--sparse-dtype", "float16"])
    assert report["files"]["sparse_encoding"]["dtype"] == "float16"


@pytest.mark.slow
def test_prune_command_end_to_end_on_the_real_model(tmp_path, capsys):
    report = run_and_check("smollm2-135m", tmp_path / "run", capsys, blocks=30)
    assert report["after"]["perplexity"] > report["before"]["perplexity"]


@pytest.mark.parametrize("args,message", [
    (["--sparsity", "1.5"], "[0, 1)"),
    (["--pattern", "4:2"], "0 < N < M"),
    (["--pattern", "2.5:4"], "0 < N < M"),
    (["--pattern", "2:4", "--sparsity", "0.7"], "fixes the sparsity"),
    (["--method", "obs"], "choose one of: magnitude, wanda, sparsegpt, structured"),
    (["--calib", "nowhere:calib"], "unknown corpus"),
    (["--nsamples", "4000", "--seqlen", "512"], "lower --nsamples or --seqlen"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, tiny_llama_folder, args, message):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_llama_folder), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' own progress bars
    assert err.startswith("kenprune: error:") and message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
