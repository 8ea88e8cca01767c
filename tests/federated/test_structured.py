"""Federated structured importances: sums of k shards are the union's, the merged selection is the centralized
one, weighting, agreement and one-line refusals (kenprune.federated.structured)."""
import copy

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.federated.rounds import ClientData
from kenprune.federated.structured import (StructuredShard, client_statistics, federated_keep, gradient_stats, merge,
                                           shard_scores)
from kenprune.models.loading import LoadedModel
from kenprune.structured.activations import _Moments
from kenprune.structured.groups import block_groups
from kenprune.structured.importance import collect_gradients, gradient_sums
from kenprune.structured.plan import PrunePlan
from kenprune.structured.prune import prune_structured
from kenprune.testing import random_windows, tiny_causal_lm


def _clients():
    return [ClientData(random_windows(2, 16, seed=1), "a"), ClientData(random_windows(1, 16, seed=2), "b"),
            ClientData(random_windows(3, 16, seed=3), "c")]


def _loaded(model):
    return LoadedModel(model=model, tokenizer=None, name="tiny", source="tiny", task="causal-lm")


@pytest.mark.parametrize("importance", ["second-order", "beta-rank"])
def test_merged_sums_of_shards_equal_the_union_sums(importance):
    model = tiny_causal_lm("llama", layers=2)
    groups = block_groups(model)
    parts = [client_statistics(model, groups, c.windows, importance, progress=False) for c in _clients()]
    union = client_statistics(model, groups, torch.cat([c.windows for c in _clients()]), importance, progress=False)
    merged = merge(parts, "tokens")
    assert merged.windows == union.windows == 6 and merged.seqlen == 16
    for mine, theirs in ((merged.gradient, union.gradient), (merged.gradient_square, union.gradient_square)):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert mine[key].dtype == torch.float64
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-12, atol=1e-15)
    assert merged.moments.keys() == union.moments.keys()
    assert bool(merged.moments) == (importance == "beta-rank") and bool(merged.gradient) == (importance != "beta-rank")
    for key, m in merged.moments.items():
        for f in ("out_sum", "out_square", "in_sum", "in_square"):
            torch.testing.assert_close(getattr(m, f), getattr(union.moments[key], f), rtol=1e-12, atol=1e-12)


def test_collect_gradients_is_the_sums_over_the_count_bit_for_bit():
    model = tiny_causal_lm("llama", layers=2)
    groups, windows = block_groups(model), random_windows(3, 16, seed=4)
    means = collect_gradients(model, groups, windows, second_order=True, progress=False)
    sums = gradient_sums(model, groups, windows, second_order=True, progress=False)
    for key in means.mean:
        assert torch.equal(means.mean[key], sums.mean[key] / 3)
        assert torch.equal(means.mean_square[key], sums.mean_square[key] / 3)


@pytest.mark.parametrize("importance", ["taylor", "beta-rank"])
def test_federated_selection_equals_the_centralized_selection_on_the_union(importance):
    dense = tiny_causal_lm("llama", layers=3)
    central, federated = _loaded(copy.deepcopy(dense)), _loaded(copy.deepcopy(dense))
    union = torch.cat([c.windows for c in _clients()])
    plan = PrunePlan(0.25, keep_first=1)
    a = prune_structured(central, plan, importance=importance, windows=union, progress=False)
    b = prune_structured(federated, plan, importance=importance, clients=_clients(), progress=False)
    assert a.widths_after == b.widths_after and a.widths_after != a.widths_before
    sa, sb = central.model.state_dict(), federated.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    fed = b.extra["federated"]
    assert fed["mode"] == "one-round" and fed["tokens"] == 6 * 16 and fed["weighting"] == "tokens"
    assert [c["weight"] for c in fed["clients"]] == pytest.approx([2 / 6, 1 / 6, 3 / 6])
    assert all(len(c["windows_sha256"]) == 64 and "text" not in c for c in fed["clients"])
    assert set(fed["agreement"]["clients"]) == {"a", "b", "c"}
    assert all(0 < v <= 1 for v in fed["agreement"]["clients"].values())
    assert b.calibration["data"] == "a,b,c"


def test_equal_weighting_is_the_mean_of_the_clients_means():
    a = StructuredShard(1, 4, {0: torch.tensor([2.0], dtype=torch.float64)},
                        moments={(0, "mlp"): _Moments(*(torch.tensor([1.0], dtype=torch.float64),) * 4, 3)})
    b = StructuredShard(3, 4, {0: torch.tensor([9.0], dtype=torch.float64)},
                        moments={(0, "mlp"): _Moments(*(torch.tensor([6.0], dtype=torch.float64),) * 4, 3)})
    assert gradient_stats(merge([a, b], "equal")).mean[0].item() == pytest.approx((2 / 1 + 9 / 3) / 2)
    assert gradient_stats(merge([a, b], "tokens")).mean[0].item() == pytest.approx((2 + 9) / 4)
    equal = merge([a, b], "equal")
    assert equal.windows == 4 and equal.moments[(0, "mlp")].out_sum.item() / 4 == pytest.approx((1 / 1 + 6 / 3) / 2)
    with pytest.raises(KenpruneError, match="share one seqlen"):
        merge([a, StructuredShard(1, 8, {0: torch.zeros(1, dtype=torch.float64)})])


def test_identical_clients_agree_fully_and_equal_one_client_holding_both():
    model = tiny_causal_lm("llama", layers=2)
    groups, plan = block_groups(model), PrunePlan(0.5)
    w = random_windows(2, 16, seed=7)
    keep, fed = federated_keep(model, groups, {0, 1}, plan, 2, "taylor",
                               [ClientData(w, "x"), ClientData(w.clone(), "x")], weighting="equal", progress=False)
    assert [c["name"] for c in fed["clients"]] == ["0:x", "1:x"]
    for table in ("clients", "kept_overlap", "removed_overlap"):
        assert set(fed["agreement"][table].values()) == {1.0}
    alone, _ = federated_keep(model, groups, {0, 1}, plan, 2, "taylor", [ClientData(w, "x")], progress=False)
    assert all(torch.equal(k, j) for k, j in zip(keep, alone))
    scores = shard_scores(groups, "taylor", client_statistics(model, groups, w, "taylor", progress=False))
    assert len(scores) == len(groups) and all(s.shape == (g.units,) for s, g in zip(scores, groups))


@pytest.mark.parametrize("importance, message", [("l1", "nothing to federate"), ("random", "nothing to federate"),
                                                  ("polarization", "trains gates")])
def test_importances_without_a_statistic_are_refused(importance, message):
    model = tiny_causal_lm("llama", layers=2)
    with pytest.raises(KenpruneError, match=message):
        prune_structured(_loaded(model), PrunePlan(0.25), importance=importance, clients=_clients(), progress=False)


def test_stability_with_clients_is_refused_before_any_work():
    model = tiny_causal_lm("llama", layers=2)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(KenpruneError, match="--stability with --clients"):
        prune_structured(_loaded(model), PrunePlan(0.25), importance="taylor", stability=2, clients=_clients(),
                         progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_agreement_counts_only_the_pruned_blocks_units():
    model = tiny_causal_lm("llama", layers=2)
    groups, plan = block_groups(model), PrunePlan(0.5, keep_first=1)
    a, b = ClientData(random_windows(2, 16, seed=8), "a"), ClientData(random_windows(2, 16, seed=9), "b")
    merged, fed = federated_keep(model, groups, {1}, plan, 2, "taylor", [a, b], progress=False)
    alone, _ = federated_keep(model, groups, {1}, plan, 2, "taylor", [a], progress=False)
    active = [i for i, g in enumerate(groups) if g.block == 1]
    units = sum(groups[i].units for i in active)
    same = sum(groups[i].units - len(set(alone[i].tolist()) ^ set(merged[i].tolist())) for i in active)
    assert fed["agreement"]["clients"]["a"] == pytest.approx(same / units)
    assert all(len(merged[i]) == groups[i].units for i, g in enumerate(groups) if g.block == 0)  # block 0 kept
