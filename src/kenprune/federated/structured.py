"""Federated structured importances: each client's sums over its own windows, merged exactly, scored centrally.

Every calibrated structured estimator reads a statistic that is a sum over calibration windows divided by
their count (kenprune.structured.importance / activations):

    taylor, vector      mean gradient g of each member weight           = sum_w grad_w / n
    second-order        also the mean squared per-window gradient F     = sum_w grad_w^2 / n
    beta-rank           per position, sums and sums of squares over windows of each unit's output and of
                        the block input (`_Moments`), spreads from them over n windows

A client computes those sums on the dense model over its own windows (`client_statistics`: float64, with
its window count and seqlen) and sends only them; `merge` adds them (weighting `tokens`: exactly the
union's sums) or re-weights them (`equal`: every client the same say, the merged mean is the mean of the
clients' means); `gradient_stats` / `spreads` turn the merged sums into what `unit_scores` reads. The
importances are computed once, on the dense model, so one round suffices: the federated selection is the
centralized one on the union of the windows (up to float rounding of the sums' order).

Per-client agreement: the units each client's statistics alone would keep (the same plan) against the merged
selection: the share of identical keep/remove decisions and the Jaccard overlap of kept and of removed units.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from ..errors import KenpruneError
from ..structured.activations import _Moments, check_spread_windows, collect_moments, spreads_from_moments
from ..structured.groups import Group
from ..structured.importance import IMPORTANCE, GradientStats, gradient_sums, unit_scores
from ..structured.plan import PrunePlan, plan_keep
from ..structured.stability import selection_stability
from .rounds import client_identities
from .stats import client_weights

MODE_TEXT = ("one round: importances are computed once on the dense model, so the clients' merged sums are the "
             "centralized statistics of the union of their windows")
_MOMENT_FIELDS = ("out_sum", "out_square", "in_sum", "in_square")


@dataclass
class StructuredShard:
    """One client's (or a merge's) sums over `windows` windows of `seqlen` tokens, float64: gradient sums and
    sums of squared per-window gradients per member weight (keyed by id, as GradientStats), and/or Beta-Rank's
    moments per group (keyed by (block, kind))."""

    windows: int
    seqlen: int
    gradient: dict[int, torch.Tensor] = field(default_factory=dict)
    gradient_square: dict[int, torch.Tensor] = field(default_factory=dict)
    moments: dict[tuple[int, str], _Moments] = field(default_factory=dict)

    def scaled(self, factor: float) -> "StructuredShard":
        """Every sum times `factor` (the window count unchanged): a shard's share under a weighting."""
        return replace(self, gradient={k: v * factor for k, v in self.gradient.items()},
                       gradient_square={k: v * factor for k, v in self.gradient_square.items()},
                       moments={k: _scaled_moments(m, factor) for k, m in self.moments.items()})


def _scaled_moments(m: _Moments, factor: float) -> _Moments:
    return _Moments(*(None if getattr(m, f) is None else getattr(m, f) * factor for f in _MOMENT_FIELDS),
                    in_features=m.in_features)


def refusal(importance: str) -> str | None:
    """Why an importance cannot be federated (None: it can)."""
    estimator = IMPORTANCE.get(importance)
    if estimator.trained:
        return (f"--importance {importance} trains gates on the data (no statistic to merge); federated structured "
                f"pruning takes taylor, second-order, vector or beta-rank")
    if not estimator.calibrated:
        return f"--importance {importance} reads no calibration data: nothing to federate; drop --clients"
    return None


def check_importance(importance: str, stability: int = 0) -> None:
    """Refuse, in one line, an importance with nothing to federate, or --stability with clients."""
    reason = refusal(importance)
    if reason:
        raise KenpruneError(reason)
    if stability:
        raise KenpruneError("--stability with --clients is not supported (it would resample every client); "
                            "drop one of them")


def client_statistics(model: torch.nn.Module, groups: list[Group], windows: torch.Tensor, importance: str, *,
                      blocks_per_pass: int | None = None, progress: bool = True) -> StructuredShard:
    """A client's sums for `importance` over its windows [n, seqlen] on the (shared, dense) model."""
    check_importance(importance)
    estimator = IMPORTANCE.get(importance)
    shard = StructuredShard(int(windows.shape[0]), int(windows.shape[1]))
    if estimator.gradients:
        sums = gradient_sums(model, groups, windows, second_order=estimator.gradients >= 2,
                             blocks_per_pass=blocks_per_pass, progress=progress, dtype=torch.float64)
        shard.gradient, shard.gradient_square = sums.mean, sums.mean_square
    if estimator.activations:
        shard.moments = collect_moments(model, groups, windows, progress=progress)
    return shard


def _add(total: StructuredShard, part: StructuredShard) -> None:
    for mine, theirs in ((total.gradient, part.gradient), (total.gradient_square, part.gradient_square)):
        for key, value in theirs.items():
            mine[key] = mine[key] + value
    for key, m in part.moments.items():
        t = total.moments[key]
        for f in _MOMENT_FIELDS:
            setattr(t, f, getattr(t, f) + getattr(m, f))
    total.windows += part.windows


def _share(shard: StructuredShard, weight: float, total_windows: int, weighting: str) -> StructuredShard:
    """A client's part of the merge: its plain sums (`tokens`: w_c = n_c / N makes the factor 1), or its sums
    scaled by w_c * N / n_c so each merged mean is the weighted mean of the clients' means."""
    return shard if weighting == "tokens" else shard.scaled(weight * total_windows / shard.windows)


def merge(parts: Sequence[StructuredShard], weighting: str = "tokens") -> StructuredShard:
    """The clients' sums merged: `tokens`, their plain sums (the union's); `equal`, client c's sums scaled by
    w_c * N / n_c (w_c = 1/K, N the windows in all), so each merged mean is the mean of the clients' means."""
    if not parts:
        raise KenpruneError("nothing to merge")
    first = parts[0]
    for p in parts[1:]:
        if p.seqlen != first.seqlen:
            raise KenpruneError(f"clients' windows must share one seqlen (positions line up), got {first.seqlen} "
                                f"and {p.seqlen}")
        if p.gradient.keys() != first.gradient.keys() or p.moments.keys() != first.moments.keys():
            raise KenpruneError("the clients' statistics cover different weights; were they computed on one model "
                                "with one importance?")
    total_windows = sum(p.windows for p in parts)
    weights = client_weights([p.windows * p.seqlen for p in parts], weighting)
    parts = [_share(p, w, total_windows, weighting) for p, w in zip(parts, weights)]
    out = StructuredShard(0, first.seqlen, {k: torch.zeros_like(v) for k, v in first.gradient.items()},
                          {k: torch.zeros_like(v) for k, v in first.gradient_square.items()},
                          {k: _scaled_moments(m, 0.0) for k, m in first.moments.items()})
    for p in parts:
        _add(out, p)
    return out


def gradient_stats(shard: StructuredShard) -> GradientStats:
    """The engine's GradientStats (float32 means, as collect_gradients gives) from sums over shard.windows."""
    n = shard.windows
    return GradientStats({k: (v / n).float() for k, v in shard.gradient.items()},
                         {k: (v / n).float() for k, v in shard.gradient_square.items()})


def spreads(groups: list[Group], shard: StructuredShard) -> dict[tuple[int, str], torch.Tensor]:
    """Beta-Rank's spreads from (merged) moments over shard.windows windows (one window: every output spread 0)."""
    return spreads_from_moments(groups, shard.moments, shard.windows)


def shard_scores(groups: list[Group], importance: str, shard: StructuredShard, *, seed: int = 0,
                 beta: float = 0.5) -> list[torch.Tensor]:
    """unit_scores of `groups` from a shard's sums."""
    estimator = IMPORTANCE.get(importance)
    return unit_scores(groups, importance, gradient_stats(shard) if estimator.gradients else None, seed,
                       spreads(groups, shard) if estimator.activations else None, beta)


def selection_agreement(alone: list[torch.Tensor], merged: list[torch.Tensor], units: list[int]) -> dict[str, float]:
    """One client's kept units (per group) against the merged selection: share of identical keep/remove
    decisions, and the Jaccard overlap of kept and of removed units."""
    overlap = selection_stability([alone, merged], units)
    same = sum(n - len(set(a.tolist()) ^ set(m.tolist())) for a, m, n in zip(alone, merged, units))
    return {"decisions": same / (sum(units) or 1), "kept_overlap": overlap["kept_overlap"],
            "removed_overlap": overlap["removed_overlap"]}


def federated_keep(model: torch.nn.Module, groups: list[Group], pruned: set[int], plan: PrunePlan, n_blocks: int,
                   importance: str, clients: Sequence[Any], *, weighting: str = "tokens", seed: int = 0,
                   beta: float = 0.5, blocks_per_pass: int | None = None, agreement: bool = True,
                   progress: bool = True) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """The kept units of every group from the clients' (ClientData) merged sums, and the record's `federated`
    entry (mode, weighting, each client's identity and weight, per-client agreement, never text).

    Clients run one after another in this process on the shared dense model; each client's sums are added
    to the running merge as soon as they are scored alone (two sets of sums in memory, not K)."""
    check_importance(importance)
    if not clients:
        raise KenpruneError("federated calibration needs at least one client")
    identities = client_identities(clients, weighting)
    active = [g for g in groups if g.block in pruned]
    by_id = {id(g): i for i, g in enumerate(groups)}

    def keep_of(scores: list[torch.Tensor]) -> list[torch.Tensor]:
        full = [torch.zeros(g.units, dtype=torch.float64) for g in groups]
        for g, s in zip(active, scores):
            full[by_id[id(g)]] = s
        return plan_keep(groups, full, plan, n_blocks)

    alone: list[list[torch.Tensor]] = []
    merged: StructuredShard | None = None
    weights = [i["weight"] for i in identities]
    if active:
        seqlens = {int(c.windows.shape[1]) for c in clients}
        if len(seqlens) > 1:
            raise KenpruneError(f"clients' windows must share one seqlen (positions line up), got {sorted(seqlens)}")
        total = sum(int(c.windows.shape[0]) for c in clients)
        if IMPORTANCE.get(importance).activations:
            check_spread_windows(total)
        for c, w in zip(clients, weights):
            shard = client_statistics(model, active, c.windows, importance, blocks_per_pass=blocks_per_pass,
                                      progress=progress)
            if agreement:
                alone.append(keep_of(shard_scores(active, importance, shard, seed=seed, beta=beta)))
            share = _share(shard, w, total, weighting)
            if merged is None:
                merged = share
            else:
                _add(merged, share)
            del shard, share
        keep = keep_of(shard_scores(active, importance, merged, seed=seed, beta=beta))
    else:
        keep = keep_of([])
    rows = [by_id[id(g)] for g in active]  # units of the pruned blocks only (the others are kept by every client)
    per_client = [selection_agreement([a[i] for i in rows], [keep[i] for i in rows], [groups[i].units for i in rows])
                  for a in alone]
    summary = {
        "mode": "one-round", "mode_text": MODE_TEXT, "executor": "sequential", "workers": 1, "ray_address": None,
        "weighting": weighting, "statistic": _statistic(importance),
        "clients": identities,
        "tokens": sum(i["tokens"] for i in identities),
        "agreement": {"what": "per client, the units its statistics alone would keep (same plan) against the merged "
                              "selection, over the pruned blocks' units: share of identical keep/remove decisions; "
                              "Jaccard overlap of kept and of removed units",
                      "clients": {n: a["decisions"] for n, a in zip((i["name"] for i in identities), per_client)},
                      "kept_overlap": {i["name"]: a["kept_overlap"] for i, a in zip(identities, per_client)},
                      "removed_overlap": {i["name"]: a["removed_overlap"] for i, a in zip(identities, per_client)}}
        if per_client else None}
    return keep, summary


def _statistic(importance: str) -> str:
    estimator = IMPORTANCE.get(importance)
    parts = (["gradient sums"] if estimator.gradients else []) + (["squared-gradient sums"]
                                                                  if estimator.gradients >= 2 else [])
    return ", ".join(parts + (["activation moment sums"] if estimator.activations else []))


def federated_rows(fed: dict[str, Any]) -> dict[str, str]:
    """Report rows of a federated structured run: the element-wise rows, with selection agreement."""
    from .report import federated_rows as base

    rows = base({**fed, "agreement": None})
    rows["statistics sent"] = f"{fed['statistic']} and window counts"
    for name, value in ((fed.get("agreement") or {}).get("clients") or {}).items():
        a = fed["agreement"]
        rows[f"selection agreement, {name} alone vs merged"] = (
            f"{value:.4f} same decisions; kept overlap {a['kept_overlap'][name]:.4f}, removed overlap "
            f"{a['removed_overlap'][name]:.4f} (Jaccard)")
    return rows


def federated_lines(fed: dict[str, Any]) -> list[str]:
    """The CLI summary's lines of a federated structured run."""
    from .report import federated_lines as base

    lines = base({**fed, "agreement": None})
    agreement = (fed.get("agreement") or {}).get("clients") or {}
    if agreement:
        lines.append("selection agreement with the merged selection (same keep/remove decisions; removed overlap): "
                     + ", ".join(f"{k} {v:.4f}; {fed['agreement']['removed_overlap'][k]:.4f}"
                                 for k, v in agreement.items()))
    return lines
