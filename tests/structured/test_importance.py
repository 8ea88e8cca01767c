"""Importance estimators: one interface, scores per unit."""
from __future__ import annotations

import pytest
import torch

from kenprune.structured.activations import collect_spreads
from kenprune.structured.groups import block_groups
from kenprune.structured.importance import IMPORTANCE, collect_gradients, unit_scores


def test_l2_unit_score_is_the_sum_over_members_and_channels(tiny_llama):
    groups = block_groups(tiny_llama)
    scores = unit_scores(groups, "l2")
    q, o = groups[0].members
    head1 = q.linear.weight[8:16].square().sum() + o.linear.weight[:, 8:16].square().sum()
    assert scores[0][1].item() == pytest.approx(head1.item(), rel=1e-6)
    assert [s.numel() for s in scores] == [g.units for g in groups]


def test_every_estimator_scores_every_unit_and_random_follows_the_seed(tiny_llama, ids):
    groups = block_groups(tiny_llama)
    stats = collect_gradients(tiny_llama, groups, ids, second_order=True, progress=False)
    spreads = collect_spreads(tiny_llama, groups, ids, progress=False)
    for name in IMPORTANCE.names():
        if IMPORTANCE.get(name).trained:  # learned while training: tests/structured/test_seed_systems.py
            continue
        scores = unit_scores(groups, name, stats, seed=3, spreads=spreads)
        assert all(s.shape == (g.units,) and torch.isfinite(s).all() for s, g in zip(scores, groups)), name
    assert torch.equal(unit_scores(groups, "random", seed=3)[1], unit_scores(groups, "random", seed=3)[1])
    assert not torch.equal(unit_scores(groups, "random", seed=3)[1], unit_scores(groups, "random", seed=4)[1])
    assert all(p.grad is None for p in tiny_llama.parameters())


def test_taylor_uses_the_mean_gradient_and_fewer_blocks_per_pass_gives_the_same(tiny_llama, ids):
    groups = block_groups(tiny_llama)
    all_at_once = collect_gradients(tiny_llama, groups, ids, progress=False)
    one_by_one = collect_gradients(tiny_llama, groups, ids, blocks_per_pass=1, progress=False)
    for key, grad in all_at_once.mean.items():
        torch.testing.assert_close(grad, one_by_one.mean[key], rtol=1e-4, atol=1e-7)
    gate = groups[1].members[0].linear.weight
    expected = (gate * all_at_once.mean[id(gate)]).abs().sum(dim=1)
    taylor = unit_scores(groups[1:2], "taylor", all_at_once)[0]
    assert taylor.argmax() == (expected + _rest(groups[1], all_at_once)).argmax()


def _rest(group, stats):
    up, down = group.members[1].linear.weight, group.members[2].linear.weight
    return (up * stats.mean[id(up)]).abs().sum(dim=1) + (down * stats.mean[id(down)]).abs().sum(dim=0)
