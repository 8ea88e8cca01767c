"""Selection stability: how much the units an importance keeps (and removes) agree across runs that differ
only in their calibration subset and seed (Beta-Rank's stability argument; landscape-2026 section 7).

A selection is, per group, the sorted indices of the kept units (plan.plan_keep). Two selections are
compared by the Jaccard overlap of their kept (group, unit) pairs and of their removed pairs; the
removed overlap is the sharper one, since at 20 % both runs keep most units whatever they pick.
"""
from __future__ import annotations

from itertools import combinations
from statistics import mean

import torch


def _pairs(keep: list[torch.Tensor], units: list[int]) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    kept = {(g, int(u)) for g, k in enumerate(keep) for u in k}
    every = {(g, u) for g, n in enumerate(units) for u in range(n)}
    return kept, every - kept


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; two empty sets agree fully."""
    return len(a & b) / len(a | b) if a | b else 1.0


def selection_stability(selections: list[list[torch.Tensor]], units: list[int]) -> dict[str, float | int]:
    """Mean and minimum pairwise Jaccard overlap of kept and of removed units over several selections."""
    if len(selections) < 2:
        raise ValueError("selection stability needs at least 2 selections")
    sets = [_pairs(s, units) for s in selections]
    kept = [jaccard(a[0], b[0]) for a, b in combinations(sets, 2)]
    removed = [jaccard(a[1], b[1]) for a, b in combinations(sets, 2)]
    return {"runs": len(selections), "kept_overlap": mean(kept), "kept_overlap_min": min(kept),
            "removed_overlap": mean(removed), "removed_overlap_min": min(removed)}
