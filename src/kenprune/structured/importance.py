"""Importance of coupled structures: one interface, several estimators (LLM-Pruner section 6.2).

An estimator maps one member's weight W (and, where it needs them, the mean gradient g and the
mean squared per-window gradient F) to a score per channel along `axis`; a unit's score is the
sum over its channels and over the group's members (LLM-Pruner's `grouping_strategy=sum`).
Beta-Rank (`beta-rank`) also reads activation spreads (kenprune.structured.activations); the
polarization gates (`polarization`) are learned during training (kenprune.structured.polarize).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import KenpruneError
from ..registry import Registry
from .groups import Group

ChannelScores = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Estimator:
    channel_scores: ChannelScores
    gradients: int = 0  # 0: none, 1: mean gradient, 2: also mean squared per-window gradient
    activations: bool = False  # also needs activation spreads (forward hooks over calibration windows)
    trained: bool = False  # scores are gates learned while training (--steps), not computed from calibration

    @property
    def calibrated(self) -> bool:
        """Whether scoring reads calibration windows."""
        return bool(self.gradients) or self.activations


def _reduce(element: torch.Tensor, axis: int) -> torch.Tensor:
    """Sum element scores over everything but the channel axis."""
    return element.sum(dim=1 - axis)


IMPORTANCE: Registry[Estimator] = Registry("importance")
IMPORTANCE.add("l1", Estimator(lambda w, g, f, axis, gen: _reduce(w.abs(), axis)), "sum |W|")
IMPORTANCE.add("l2", Estimator(lambda w, g, f, axis, gen: _reduce(w.square(), axis)), "sum W^2")
IMPORTANCE.add("taylor", Estimator(lambda w, g, f, axis, gen: _reduce((w * g).abs(), axis), gradients=1),
               "first-order Taylor, sum |W*g| (LLM-Pruner Element1, its default)")
IMPORTANCE.add("second-order", Estimator(
    lambda w, g, f, axis, gen: _reduce((w * g - 0.5 * w * f * w).abs(), axis), gradients=2),
    "sum |W*g - W*F*W/2|, F = mean squared per-window gradient (LLM-Pruner Element2)")
IMPORTANCE.add("vector", Estimator(lambda w, g, f, axis, gen: _reduce(w * g, axis).abs(), gradients=1),
               "vector-wise Taylor, |g.W| per channel")
IMPORTANCE.add("random", Estimator(lambda w, g, f, axis, gen: torch.rand(w.shape[axis], generator=gen)),
               "random baseline (seeded)")
IMPORTANCE.add("beta-rank", Estimator(lambda w, g, f, axis, gen: _reduce(w.abs(), axis), activations=True),
               "Beta-Rank: L1 x output spread / input spread, min-max per layer, mixed with the L1 rank by --beta")
IMPORTANCE.add("polarization", Estimator(None, trained=True),
               "gates trained with the weights (LoRA) under the polarization regularizer (--steps)")


@dataclass
class GradientStats:
    """Mean gradient and mean squared per-window gradient of each member weight, keyed by id."""

    mean: dict[int, torch.Tensor]
    mean_square: dict[int, torch.Tensor]


def _member_weights(groups: Iterable[Group]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for group in groups:
        for member in group.members:
            seen.setdefault(id(member.linear.weight), member.linear.weight)
    return list(seen.values())


def forward(model: nn.Module, item: torch.Tensor | dict[str, torch.Tensor], device: torch.device, *,
            loss: bool = True) -> Any:
    """One calibration item through the model: a window of token ids (language-modelling loss on itself) or a
    labelled batch as keyword tensors (input_ids, attention_mask, labels: a classifier's loss)."""
    if isinstance(item, dict):
        return model(**{k: v.to(device) for k, v in item.items() if loss or k != "labels"})
    ids = item.unsqueeze(0).to(device)
    return model(input_ids=ids, labels=ids if loss else None, use_cache=False)


def collect_gradients(model: nn.Module, groups: list[Group], windows: torch.Tensor | list[dict[str, torch.Tensor]], *,
                      second_order: bool = False,
                      blocks_per_pass: int | None = None, progress: bool = True) -> GradientStats:
    """Loss gradients of the groups' weights over calibration windows (or labelled batches, see `forward`),
    one window per backward: the means of `gradient_sums`.

    blocks_per_pass bounds memory: only that many blocks hold gradients at a time (more passes).
    """
    stats = gradient_sums(model, groups, windows, second_order=second_order, blocks_per_pass=blocks_per_pass,
                          progress=progress)
    n = len(windows)
    for table in (stats.mean, stats.mean_square):
        for key in table:
            table[key] /= n
    return stats


def gradient_sums(model: nn.Module, groups: list[Group], windows: torch.Tensor | list[dict[str, torch.Tensor]], *,
                  second_order: bool = False, blocks_per_pass: int | None = None, progress: bool = True,
                  dtype: torch.dtype = torch.float32) -> GradientStats:
    """Sums over the windows (not yet divided by their count) of each member weight's gradient and of its
    square, accumulated in `dtype`, in a GradientStats (`mean` holds the sums here): what a federated client
    sends (kenprune.federated.structured)."""
    blocks = sorted({g.block for g in groups})
    step = blocks_per_pass or len(blocks) or 1
    flags = {id(p): p.requires_grad for p in model.parameters()}
    stats = GradientStats({}, {})
    device = next(model.parameters()).device
    passes = [blocks[i:i + step] for i in range(0, len(blocks), step)]
    bar = tqdm(total=len(passes) * len(windows), desc="gradients", unit="win", disable=not progress, leave=False)
    try:
        for chosen in passes:
            weights = _member_weights(g for g in groups if g.block in chosen)
            for p in model.parameters():
                p.requires_grad_(False)
            for w in weights:
                w.requires_grad_(True)
                w.grad = None
            for window in windows:
                loss = forward(model, window, device).loss
                loss.backward()
                for w in weights:
                    g = w.grad.detach().to(dtype)
                    _accumulate(stats.mean, w, g)
                    if second_order:
                        _accumulate(stats.mean_square, w, g.square())
                    w.grad = None
                bar.update(1)
    finally:
        bar.close()
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])
            p.grad = None
    return stats


def _accumulate(table: dict[int, torch.Tensor], weight: torch.Tensor, value: torch.Tensor) -> None:
    key = id(weight)
    if key in table:
        table[key] += value
    else:
        table[key] = value.clone()


def unit_scores(groups: list[Group], importance: str, stats: GradientStats | None = None,
                seed: int = 0, spreads: dict[tuple[int, str], torch.Tensor] | None = None,
                beta: float = 0.5) -> list[torch.Tensor]:
    """One score per unit of each group (higher = more important), in group order.

    `spreads`: per (block, kind), each unit's activation spread (activations.collect_spreads), for beta-rank.
    """
    estimator = IMPORTANCE.get(importance)
    if estimator.trained:
        raise KenpruneError(f"importance {importance!r} is learned while training; give --steps")
    if estimator.gradients and stats is None:
        raise KenpruneError(f"importance {importance!r} needs calibration gradients")
    if estimator.activations and spreads is None:
        raise KenpruneError(f"importance {importance!r} needs calibration activations")
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for group in groups:
        total = torch.zeros(group.units, dtype=torch.float64)
        for member in group.members:
            w = member.linear.weight.detach().float()
            key = id(member.linear.weight)
            g = stats.mean.get(key) if stats else None
            f = stats.mean_square.get(key) if stats else None
            if estimator.gradients >= 1 and g is None:
                raise KenpruneError(f"no gradient for block {group.block} {member.name}")
            if estimator.gradients >= 2 and f is None:
                raise KenpruneError(f"no squared gradient for block {group.block} {member.name}")
            channel = estimator.channel_scores(w, g, f, member.axis, gen).double()
            total += channel[member.unit_channels].sum(dim=-1).cpu()
        if estimator.activations:
            total = beta_rank(total, spreads[(group.block, group.kind)], beta)
        scores.append(total)
    return scores


def min_max(x: torch.Tensor) -> torch.Tensor:
    """x scaled to [0, 1] (all zeros when x is constant)."""
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


def beta_rank(l1: torch.Tensor, spread: torch.Tensor, beta: float) -> torch.Tensor:
    """Beta-Rank of the units of one layer (Homayounfar et al., arXiv 2304.07461; code mohofar/Beta-Rank,
    `rank_generation.py` `std_filters`).

    The paper's filter score is sum over output positions of |f_k| * std_batch(out_k[pos]) / std(input patch),
    min-max normalized per layer; its README mixes it with the L1 rank R^L1 = sum |f_k| by a weight beta.
    Here `l1` is each unit's sum |W| over its coupled slices and `spread` its mean over token positions
    of std over windows of the unit's output (the o_proj / down_proj input channels it owns) over the std
    of the block input at that position (activations.collect_spreads). The result is
    beta * minmax(l1 * spread) + (1 - beta) * minmax(l1): beta = 1 is the data-aware rank alone, 0 is L1.
    """
    l1, spread = l1.double(), spread.double()
    return beta * min_max(l1 * spread) + (1 - beta) * min_max(l1)
