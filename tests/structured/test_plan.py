"""Ratios: uniform, untouched block ranges, global ranking, rounding, and the bad ratios."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.structured.groups import block_groups
from kenprune.structured.importance import unit_scores
from kenprune.structured.plan import PrunePlan, plan_keep


def _plan(model, plan, importance="l2", unit="auto"):
    groups = block_groups(model, unit)
    return groups, plan_keep(groups, unit_scores(groups, importance), plan, n_blocks=len(groups) // 2)


def test_uniform_ratio_removes_query_heads_evenly_per_kv_group_and_rounds_mlp(tiny_llama):
    groups, keep = _plan(tiny_llama, PrunePlan(0.3, round_to=8))
    for group, kept in zip(groups, keep):
        if group.unit == "query-head":
            assert kept.numel() == 4 and ((kept // 3).bincount() == 2).all()  # 2 of 3 per kv group
        else:
            assert kept.numel() == 64 and kept.numel() % 8 == 0  # 96 * 0.7 = 67.2 -> 64
        assert torch.equal(kept, kept.sort().values)


def test_keep_first_and_last_leave_blocks_untouched_and_lowest_scores_go(tiny_llama):
    groups, keep = _plan(tiny_llama, PrunePlan(0.5, keep_first=1, keep_last=1, round_to=1))
    scores = unit_scores(groups, "l2")
    for group, kept, score in zip(groups, keep, scores):
        if group.block in (0, 3):
            assert kept.numel() == group.units
        elif group.unit == "channel":
            dropped = torch.ones(group.units, dtype=torch.bool)
            dropped[kept] = False
            assert score[kept].min() >= score[dropped].max()


def test_global_ranking_gives_blocks_different_widths(tiny_llama):
    with torch.no_grad():  # make block 2's MLP clearly the least important
        for member in block_groups(tiny_llama)[5].members:
            member.linear.weight.mul_(0.01)
    groups, keep = _plan(tiny_llama, PrunePlan(0.25, round_to=8, global_ranking=True))
    mlp_widths = [k.numel() for g, k in zip(groups, keep) if g.unit == "channel"]
    assert len(set(mlp_widths)) > 1 and mlp_widths[2] == min(mlp_widths) and all(w % 8 == 0 for w in mlp_widths)


def test_kv_mode_removes_whole_key_value_groups(tiny_llama):
    groups, keep = _plan(tiny_llama, PrunePlan(0.5), unit="kv")
    assert keep[0].numel() == 1


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(KenpruneError, match=r"--ratio must be in \[0, 1\)"):
        PrunePlan(ratio)


def test_ratio_removing_every_head_is_refused(tiny_llama, make_tiny):
    with pytest.raises(KenpruneError, match="would remove all 3 query heads of each key/value group"):
        _plan(tiny_llama, PrunePlan(0.9))
    with pytest.raises(KenpruneError, match="would remove every attention head of block 0"):
        _plan(make_tiny(heads=2, kv_heads=2), PrunePlan(0.8))
    with pytest.raises(KenpruneError, match="leave none of the 4 blocks"):
        _plan(tiny_llama, PrunePlan(0.2, keep_first=2, keep_last=2))
