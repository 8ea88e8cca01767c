"""Allocations under federated calibration: scores from the clients' merged dense statistics equal the union's."""
import copy

import pytest
import torch

from kenprune.allocate import resolve_allocation
from kenprune.allocate.model import layer_source, model_layers
from kenprune.engine.elementwise import layer_scores
from kenprune.federated.rounds import ClientData, collect_dense, score_rounds, stats_scores
from kenprune.federated.stats import merge_layers
from kenprune.testing import random_windows, tiny_causal_lm


def _clients():
    return [ClientData(random_windows(2, 16, seed=1), "a"), ClientData(random_windows(1, 16, seed=2), "b"),
            ClientData(random_windows(3, 16, seed=3), "c")]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_scores_from_rounds_equal_scores_from_the_unions_statistics_and_the_engines(method):
    model = tiny_causal_lm("llama", layers=3)
    dense = copy.deepcopy(model)
    clients = _clients()
    union = torch.cat([c.windows for c in clients])
    rounds, info = score_rounds(model, clients, method=method, progress=False)
    statistic = "hessian" if method == "sparsegpt" else "norms"
    from_union = stats_scores(model, collect_dense(model, union, statistic, progress=False), method=method)
    from_files = stats_scores(model, merge_layers([collect_dense(model, c.windows, statistic, progress=False)
                                                   for c in clients]), method=method)
    engine = layer_scores(model, union, method=method, progress=False)
    assert rounds.keys() == from_union.keys() == engine.keys() and info["executor"] == "sequential"
    for name in rounds:
        torch.testing.assert_close(rounds[name], from_union[name], rtol=1e-9, atol=0)  # float64 sums, other order
        torch.testing.assert_close(rounds[name], from_files[name], rtol=1e-9, atol=0)  # dense rounds = dense files
        torch.testing.assert_close(rounds[name], engine[name], rtol=1e-4, atol=1e-6)  # the engine sums in float32
    assert all(torch.equal(p, dict(dense.named_parameters())[n]) for n, p in model.named_parameters())  # unpruned


@pytest.mark.parametrize("spec", ["owl:m=3", "global"])
def test_a_federated_allocation_equals_the_centralized_one(spec):
    model = tiny_causal_lm("llama", layers=4)
    clients = _clients()
    union = torch.cat([c.windows for c in clients])
    central = resolve_allocation(spec, layer_source(model, union, method="wanda", progress=False), 0.6)
    scores, _ = score_rounds(model, clients, method="wanda", progress=False)
    federated = resolve_allocation(spec, model_layers(model, scores), 0.6)
    assert central.ratios.keys() == federated.ratios.keys()
    for name, ratio in central.ratios.items():
        assert federated.ratios[name] == pytest.approx(ratio, abs=1e-6), name
    assert len(set(round(r, 6) for r in federated.ratios.values())) > 1  # not uniform: the scores mattered


def test_prune_with_clients_and_owl_records_the_scoring_round(tiny_llama_folder, tmp_path):
    from kenprune.cli import main
    from kenprune.record import read

    common = ["prune", "--model", str(tiny_llama_folder), "--method", "wanda", "--sparsity", "0.6",
              "--allocation", "owl:m=3", "--nsamples", "2", "--seqlen", "32"]
    assert main([*common, "--clients", "wiki,lee", "--out", str(tmp_path / "r")]) == 0
    d = read(tmp_path / "r").details
    assert d["allocation"]["spec"] == "owl:m=3"
    assert d["federated"]["mode"] == "rounds"
    assert d["federated"]["allocation_scores"]["mode"] == "rounds"
    assert d["federated"]["allocation_scores"]["executor"] == "sequential"
    assert d["block_linears"]["sparsity"] == pytest.approx(0.6, abs=0.02)
    layers = read(tmp_path / "r").layers
    assert len({round(x.allocated, 6) for x in layers}) > 1
    for data, name in (("wiki:calib", "a"), ("lee:calib", "b")):
        assert main(["stats", "export", "--model", str(tiny_llama_folder), "--method", "wanda", "--calib", data,
                     "--nsamples", "2", "--seqlen", "32", "--out", str(tmp_path / name)]) == 0
    assert main([*common[:-4], "--stats", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "f")]) == 0
    files = read(tmp_path / "f")
    assert files.details["federated"]["allocation_scores"]["mode"] == "files"
    # the dense scoring round of --clients and the files (both the dense model's statistics): the same allocation
    assert [x.allocated for x in files.layers] == pytest.approx([x.allocated for x in layers], abs=1e-9)


def test_a_streamed_federated_allocation_is_refused_in_one_line(tiny_llama_folder, tmp_path, capsys):
    from kenprune.cli import main

    code = main(["prune", "--model", str(tiny_llama_folder), "--method", "wanda", "--allocation", "owl",
                 "--clients", "wiki", "--nsamples", "2", "--seqlen", "32", "--stream", "on",
                 "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code != 0 and "--allocation with federated calibration" in err and len(err.strip().splitlines()) == 1


def test_the_summary_and_the_report_say_where_the_allocation_was_scored():
    from kenprune.federated.report import federated_lines, federated_rows

    fed = {"mode": "rounds", "mode_text": "per-block rounds", "executor": "sequential", "workers": 1,
           "weighting": "tokens", "tokens": 32, "agreement": None,
           "clients": [{"name": "a", "data": "wiki:calib", "windows": 2, "seqlen": 16, "tokens": 32, "seed": 0,
                        "windows_sha256": "0" * 64, "weight": 1.0}],
           "allocation_scores": {"mode": "rounds", "executor": "sequential", "workers": 1, "seconds": 1.5,
                                 "what": "one round per block on the dense model"}}
    assert federated_rows(fed)["allocation scored from"] == ("rounds (sequential, 1.5 s): one round per block on "
                                                             "the dense model")
    assert federated_lines(fed)[-1].startswith("allocation scored from rounds (sequential, 1.5 s)")
    del fed["allocation_scores"]
    assert "allocation scored from" not in federated_rows(fed)
