import json

import pytest
import torch

from kenprune.cli import main
from kenprune.record import read


def run_and_check(model, out, capsys, blocks, method="wanda", extra=()):
    code = main(["prune", "--model", str(model), "--method", method, "--sparsity", "0.5", "--nsamples", "2",
                 "--seqlen", "64", "--eval", "wiki:test", "--eval-windows", "1", "--eval-seqlen", "128",
                 "--out", str(out), *extra])
    assert code == 0
    record = read(out)
    report = record.details
    assert report["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert len(record.layers) == blocks * 7 and all(abs(x.value - 0.5) < 1e-3 for x in record.layers)
    assert report["calibration"] == {**report["calibration"], "data": "wiki:calib", "samples": 2, "seqlen": 64}
    after, before = record.quality_of("after"), record.quality_of("before")
    assert after.value > 1 and before.value > 1
    assert after.protocol["seqlen"] == 128  # the evaluation protocol never follows --seqlen
    assert {"load", "prune", "eval_before", "eval_after"} <= set(record.seconds())
    files = report["sizes"]
    assert files["sparse_file_bytes"] < 0.75 * files["dense_folder_bytes"]
    assert record.file("sparse").bytes == files["sparse_file_bytes"]
    assert record.peak_rss_bytes > 0 and "versions" in record.provenance
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
    assert report["sparse_encoding"]["dtype"] == "float16"


@pytest.mark.slow
def test_prune_command_end_to_end_on_the_real_model(tmp_path, capsys):
    run_and_check("smollm2-135m", tmp_path / "run", capsys, blocks=30)
    record = read(tmp_path / "run")
    assert record.quality_of("after").value > record.quality_of("before").value


@pytest.mark.parametrize("args,message", [
    (["--sparsity", "1.5"], "[0, 1)"),
    (["--pattern", "4:2"], "0 < N < M"),
    (["--pattern", "2.5:4"], "0 < N < M"),
    (["--pattern", "2:4", "--sparsity", "0.7"], "fixes the sparsity"),
    (["--method", "obs"], "choose one of: magnitude, wanda, sparsegpt"),
    (["--calib", "nowhere:calib"], "unknown corpus"),
    (["--nsamples", "4000", "--seqlen", "512"], "lower --nsamples or --seqlen"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, tiny_llama_folder, args, message):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_llama_folder), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' own progress bars
    assert err.startswith("kenprune: error:") and message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
