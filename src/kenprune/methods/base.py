"""The one interface every element-wise pruning method implements.

A method is a pure function of one weight matrix [out, in] (nn.Linear orientation) and the
calibration statistics of that layer's input; it returns the prune mask and the new
weight. It knows nothing about models: the engine (kenprune.engine) feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .patterns import Pattern, select

# Which calibration statistic a method needs; the engine collects only that.
NO_STATISTIC = "none"
NORMS = "norms"  # per-input-column squared norms (Wanda)
HESSIAN = "hessian"  # H = 2 X X^T / n (SparseGPT); implies norms
STATISTICS = (NO_STATISTIC, NORMS, HESSIAN)


class InputStats:
    """Running statistics of one layer's input X (tokens x columns), accumulated in float32.

    `sq_sum[j]` = sum over tokens of x_j^2, so `column_norms` = ||X_j||_2 (Wanda's scale);
    `hessian` = (2 / tokens) * X^T X, updated as a running mean like SparseGPT's add_batch.
    """

    def __init__(self, columns: int, hessian: bool = False, device: torch.device | str = "cpu"):
        self.columns = columns
        self.tokens = 0
        self.sq_sum = torch.zeros(columns, dtype=torch.float32, device=device)
        self.hessian = torch.zeros(columns, columns, dtype=torch.float32, device=device) if hessian else None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, self.columns).float()
        batch = x.shape[0]
        self.sq_sum += x.square().sum(dim=0)
        if self.hessian is not None:
            self.hessian *= self.tokens / (self.tokens + batch)
            scaled = x * (2.0 / (self.tokens + batch)) ** 0.5
            self.hessian.addmm_(scaled.T, scaled)
        self.tokens += batch

    @property
    def column_norms(self) -> torch.Tensor:
        return self.sq_sum.sqrt()


@dataclass
class PruneResult:
    weight: torch.Tensor  # the new weight, same shape and dtype as the input
    pruned: torch.Tensor  # bool, True where the weight was zeroed


class ScoreFn(Protocol):
    def __call__(self, weight: torch.Tensor, stats: InputStats | None) -> torch.Tensor: ...


class PruneFn(Protocol):
    def __call__(self, weight: torch.Tensor, stats: InputStats | None, *, sparsity: float,
                 pattern: Pattern, group: str) -> PruneResult: ...


@dataclass(frozen=True)
class Method:
    """A registered pruning method: what it needs, how it scores, how it prunes.

    score: element-wise importance (higher = keep), used by allocators (OWL/DSA) and reports;
    prune: the method's own pruning (which may update the remaining weights).
    """

    name: str
    statistic: str
    default_group: str
    score: Callable[[torch.Tensor, InputStats | None], torch.Tensor]
    prune: Callable[..., PruneResult]
    description: str = ""


def prune_by_score(score: Callable[[torch.Tensor, InputStats | None], torch.Tensor]) -> Callable[..., PruneResult]:
    """A prune function that zeroes the lowest-scoring weights and updates nothing else."""

    def prune(weight: torch.Tensor, stats: InputStats | None, *, sparsity: float, pattern: Pattern,
              group: str = "row") -> PruneResult:
        pruned = select(score(weight, stats), sparsity, pattern, group)
        return PruneResult(weight.masked_fill(pruned, 0), pruned)

    return prune
