"""Magnitude pruning: score |W|; the papers' baseline compares over the whole matrix."""
from __future__ import annotations

import torch

from .base import NO_STATISTIC, InputStats, Method, prune_by_score


def score(weight: torch.Tensor, stats: InputStats | None = None) -> torch.Tensor:
    return weight.abs().float()


METHOD = Method("magnitude", NO_STATISTIC, "matrix", score, prune_by_score(score),
                "|W|, no calibration (per-matrix groups by default, --group row for per-row)")
