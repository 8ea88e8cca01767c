"""Calibration statistics as sums and counts: what a client computes, what a server merges.

A method needs, per block Linear, statistics of its input X (tokens x columns): Wanda the squared
column norms sum_t x_tj^2, SparseGPT the Hessian 2 X^T X / n. `ShardStats` keeps the raw sums
(float64) and the token count, so statistics of k shards merge into those of their union by adding
them (`merge`, weighting `tokens`); `to_input_stats` turns them into the engine's `InputStats`
(float32, the Hessian as the mean 2/n * sum x x^T) that every method reads.

Weighting of unequal shards (weights w_c, sum 1, n_c the client's tokens, N their sum): the merged
statistic is the one of N tokens whose mean second moment is sum_c w_c (S_c / n_c). `tokens`
(w_c = n_c / N) is exactly the union's sums (no rescaling); `equal` (w_c = 1/K) gives every client
the same say whatever its size.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..errors import KenpruneError
from ..methods.base import InputStats

WEIGHTINGS = ("tokens", "equal")


class ShardStats:
    """Sums over one shard of one layer's input: tokens, sum x^2 per column, sum x x^T (float64).

    The constructor and `add` match InputStats', so the engine's `BlockStep.collect` fills it directly.
    """

    def __init__(self, columns: int, hessian: bool = False, device: torch.device | str = "cpu"):
        self.columns = columns
        self.tokens = 0
        self.sq_sum = torch.zeros(columns, dtype=torch.float64, device=device)
        self.xtx = torch.zeros(columns, columns, dtype=torch.float64, device=device) if hessian else None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, self.columns).double()
        self.sq_sum += x.square().sum(dim=0)
        if self.xtx is not None:
            self.xtx.addmm_(x.T, x)
        self.tokens += x.shape[0]

    @property
    def statistic(self) -> str:
        return "hessian" if self.xtx is not None else "norms"

    def cpu(self) -> "ShardStats":
        out = ShardStats(self.columns, False)
        out.tokens, out.sq_sum = self.tokens, self.sq_sum.cpu()
        out.xtx = None if self.xtx is None else self.xtx.cpu()
        return out

    def scaled(self, factor: float) -> "ShardStats":
        """The sums times `factor` (token count unchanged): a shard's share under a weighting."""
        out = ShardStats(self.columns, False)
        out.tokens, out.sq_sum = self.tokens, self.sq_sum * factor
        out.xtx = None if self.xtx is None else self.xtx * factor
        return out

    def to_input_stats(self, device: torch.device | str = "cpu") -> InputStats:
        """The engine's statistics: float32 column sums and the mean Hessian 2/n * sum x x^T."""
        if self.tokens <= 0:
            raise KenpruneError("statistics of zero tokens cannot calibrate a layer")
        out = InputStats(self.columns, False, device)
        out.tokens = self.tokens
        out.sq_sum = self.sq_sum.to(device=device, dtype=torch.float32)
        if self.xtx is not None:
            out.hessian = (self.xtx * (2.0 / self.tokens)).to(device=device, dtype=torch.float32)
        return out


def client_weights(tokens: Sequence[int], weighting: str = "tokens") -> list[float]:
    """Each client's share w_c (sum 1) under a weighting: its tokens' share, or 1/K."""
    if weighting not in WEIGHTINGS:
        raise KenpruneError(f"unknown weighting {weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")
    if not tokens or any(t <= 0 for t in tokens):
        raise KenpruneError(f"every client needs calibration tokens, got {list(tokens)}")
    total = sum(tokens)
    return [t / total for t in tokens] if weighting == "tokens" else [1.0 / len(tokens)] * len(tokens)


def merge(parts: Sequence[ShardStats], weighting: str = "tokens") -> ShardStats:
    """One layer's statistics from k shards: their sums (`tokens`: exactly the union's) or re-weighted sums."""
    if not parts:
        raise KenpruneError("nothing to merge")
    first = parts[0]
    for p in parts[1:]:
        if p.columns != first.columns or (p.xtx is None) != (first.xtx is None):
            raise KenpruneError(f"cannot merge statistics of {first.columns} columns ({first.statistic}) with "
                                f"{p.columns} columns ({p.statistic})")
    weights = client_weights([p.tokens for p in parts], weighting)
    total = sum(p.tokens for p in parts)
    if weighting != "tokens":  # S = N * sum_c w_c S_c / n_c; with w_c = n_c / N that is sum_c S_c, unscaled
        parts = [p.scaled(w * total / p.tokens) for p, w in zip(parts, weights)]
    out = ShardStats(first.columns, first.xtx is not None, first.sq_sum.device)
    for p in parts:
        out.sq_sum += p.sq_sum
        if out.xtx is not None:
            out.xtx += p.xtx
    out.tokens = total
    return out


def merge_layers(clients: Sequence[Mapping[str, ShardStats]], weighting: str = "tokens") -> dict[str, ShardStats]:
    """Per-Linear merge of every client's {linear name: ShardStats}; Linears that shared one input keep sharing."""
    names = list(clients[0])
    for c in clients[1:]:
        if list(c) != names:
            raise KenpruneError("the clients' statistics name different layers; were they computed on one model?")
    shared: dict[tuple[int, ...], ShardStats] = {}
    out: dict[str, ShardStats] = {}
    for name in names:
        key = tuple(id(c[name]) for c in clients)
        if key not in shared:
            shared[key] = merge([c[name] for c in clients], weighting)
        out[name] = shared[key]
    return out
