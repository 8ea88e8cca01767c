"""How many units each group keeps, and which: uniform ratio, untouched block ranges, global ranking.

Query heads are removed evenly within every key/value group and key/value groups leave at least
one, so head counts stay consistent; MLP widths are rounded to a multiple of `round_to`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import KenpruneError
from .groups import Group


@dataclass(frozen=True)
class PrunePlan:
    """The user's request: a ratio of units removed in every pruned group."""

    ratio: float
    keep_first: int = 0
    keep_last: int = 0
    round_to: int = 8
    global_ranking: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise KenpruneError(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.keep_first < 0 or self.keep_last < 0:
            raise KenpruneError("--keep-first and --keep-last must be >= 0")
        if self.round_to < 1:
            raise KenpruneError(f"--round-to must be >= 1, got {self.round_to}")

    def check(self, n_blocks: int) -> None:
        """The block range leaves something to prune."""
        if self.keep_first + self.keep_last >= n_blocks:
            raise KenpruneError(f"--keep-first {self.keep_first} + --keep-last {self.keep_last} leave none of the "
                                f"{n_blocks} blocks to prune")

    def pruned_blocks(self, n_blocks: int) -> range:
        return range(self.keep_first, n_blocks - self.keep_last)


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def _removed_units(group: Group, remove: float, plan: PrunePlan, strict: bool) -> int:
    """Units to remove from a group given a wish (a count), respecting its structure."""
    if group.unit == "query-head":
        per_kv = group.per_kv
        k = _round(remove / (group.units // per_kv))
        if k >= per_kv:
            if strict:
                raise KenpruneError(f"--ratio {plan.ratio} would remove all {per_kv} query heads of each key/value "
                                    f"group in block {group.block}; use a ratio below {(per_kv - 0.5) / per_kv:.2f}")
            k = per_kv - 1
        return k * (group.units // per_kv)
    if group.unit == "kv-group":
        k = _round(remove)
        if k >= group.units:
            if strict:
                raise KenpruneError(f"--ratio {plan.ratio} would remove every attention head of block {group.block}; "
                                    f"use a ratio below {(group.units - 0.5) / group.units:.2f}")
            k = group.units - 1
        return k
    keep = group.units - remove
    if remove > 0:
        keep = max(plan.round_to, _round(keep / plan.round_to) * plan.round_to)
    return max(0, group.units - min(keep, group.units))


def _keep_top(group: Group, scores: torch.Tensor, removed: int) -> torch.Tensor:
    """Indices of the units kept (sorted), dropping the lowest scores (evenly per kv group for heads)."""
    if removed == 0:
        return torch.arange(group.units)
    if group.unit == "query-head":
        per_kv = group.per_kv
        n_kv = group.units // per_kv
        keep_each = per_kv - removed // n_kv
        top = scores.view(n_kv, per_kv).topk(keep_each, dim=1).indices
        return (top + torch.arange(n_kv).unsqueeze(1) * per_kv).reshape(-1).sort().values
    return scores.topk(group.units - removed).indices.sort().values


def plan_keep(groups: list[Group], scores: list[torch.Tensor], plan: PrunePlan, n_blocks: int) -> list[torch.Tensor]:
    """Sorted indices of the units each group keeps."""
    plan.check(n_blocks)
    pruned = set(plan.pruned_blocks(n_blocks))
    wishes = [plan.ratio * g.units if g.block in pruned else 0.0 for g in groups]
    if plan.global_ranking and plan.ratio > 0:
        wishes = _global_wishes(groups, scores, plan.ratio, pruned)
    keep = []
    for group, score, wish in zip(groups, scores, wishes):
        removed = _removed_units(group, wish, plan, strict=not plan.global_ranking) if wish > 0 else 0
        keep.append(_keep_top(group, score, removed))
    return keep


def _global_wishes(groups: list[Group], scores: list[torch.Tensor], ratio: float, pruned: set[int]) -> list[float]:
    """Per group, how many of its units fall in the lowest `ratio` across all pruned groups of its kind."""
    wishes = [0.0] * len(groups)
    for kind in {(g.kind, g.unit) for g in groups}:
        members = [i for i, g in enumerate(groups) if (g.kind, g.unit) == kind and g.block in pruned]
        if not members:
            continue
        pooled = torch.cat([scores[i] for i in members])
        n_remove = _round(ratio * pooled.numel())
        if n_remove == 0:
            continue
        threshold = pooled.kthvalue(n_remove).values
        for i in members:
            wishes[i] = float((scores[i] <= threshold).sum())
    return wishes
