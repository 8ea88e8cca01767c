"""Federated rounds give the centralized engine's masks; Ray clients equal in-process ones; agreement."""
import copy

import pytest
import torch

from kenprune.engine.elementwise import prune_model
from kenprune.errors import KenpruneError
from kenprune.federated.rounds import ClientData, collect_dense, prune_from_stats, prune_rounds
from kenprune.federated.stats import merge_layers
from kenprune.testing import random_windows, tiny_causal_lm


def _clients():
    return [ClientData(random_windows(2, 16, seed=1), "a"), ClientData(random_windows(1, 16, seed=2), "b"),
            ClientData(random_windows(3, 16, seed=3), "c")]


def _masks(model):
    return {n: (p == 0) for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2}


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_merged_rounds_give_the_centralized_masks(method):
    dense = tiny_causal_lm("llama", layers=2)
    central, federated = copy.deepcopy(dense), copy.deepcopy(dense)
    union = torch.cat([c.windows for c in _clients()])
    prune_model(central, union, method=method, sparsity=0.5, progress=False)
    report = prune_rounds(federated, _clients(), method=method, sparsity=0.5, progress=False)
    a, b = _masks(central), _masks(federated)
    assert a.keys() == b.keys()
    agree = sum(int((a[n] == b[n]).sum()) for n in a) / sum(a[n].numel() for n in a)
    assert agree == 1.0
    for n, p in central.named_parameters():
        torch.testing.assert_close(p, dict(federated.named_parameters())[n], rtol=1e-4, atol=1e-5)
    fed = report["federated"]
    assert fed["mode"] == "rounds" and fed["tokens"] == 6 * 16
    assert [c["tokens"] for c in fed["clients"]] == [32, 16, 48]
    assert all(len(c["windows_sha256"]) == 64 and "text" not in c for c in fed["clients"])
    assert set(fed["agreement"]["clients"]) == {"a", "b", "c"}
    assert all(0.5 <= v <= 1 for v in fed["agreement"]["clients"].values())


def test_one_client_agrees_with_itself_completely():
    model = tiny_causal_lm("llama", layers=2)
    report = prune_rounds(model, _clients()[:1], method="wanda", sparsity=0.6, progress=False)
    assert report["federated"]["agreement"]["clients"] == {"a": 1.0}


def test_ray_clients_equal_in_process_clients():
    pytest.importorskip("ray")
    dense = tiny_causal_lm("llama", layers=2)
    local, remote = copy.deepcopy(dense), copy.deepcopy(dense)
    prune_rounds(local, _clients(), method="sparsegpt", sparsity=0.5, progress=False)
    report = prune_rounds(remote, _clients(), method="sparsegpt", sparsity=0.5, workers=2, progress=False)
    assert report["federated"]["executor"] == "ray"
    for n, p in local.named_parameters():
        assert torch.equal(p, dict(remote.named_parameters())[n]), n


def test_dense_statistics_prune_like_one_dense_pass():
    """The one-round (file) mode: statistics of the dense model, merged, prune as the union's dense statistics."""
    dense = tiny_causal_lm("llama", layers=2)
    clients = _clients()
    parts = [collect_dense(dense, c.windows, "norms", progress=False) for c in clients]
    union = collect_dense(dense, torch.cat([c.windows for c in clients]), "norms", progress=False)
    merged = merge_layers(parts)
    for n in union:
        assert merged[n].tokens == union[n].tokens
        torch.testing.assert_close(merged[n].sq_sum, union[n].sq_sum, rtol=1e-12, atol=1e-9)
    a, b = copy.deepcopy(dense), copy.deepcopy(dense)
    prune_from_stats(a, merged, method="wanda", sparsity=0.5, progress=False)
    report = prune_from_stats(b, union, method="wanda", sparsity=0.5, alone=parts, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert report["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert all(len(v) == 3 for v in report["agreement_layers"].values())


def test_magnitude_is_refused():
    with pytest.raises(KenpruneError, match="nothing to federate"):
        prune_rounds(tiny_causal_lm("llama", layers=1), _clients(), method="magnitude", progress=False)
