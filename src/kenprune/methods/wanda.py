"""Wanda (Sun et al. 2024): score |W_ij| * ||X_j||_2, compared within each output row, no update."""
from __future__ import annotations

import torch

from .base import NORMS, InputStats, Method, prune_by_score


def score(weight: torch.Tensor, stats: InputStats | None) -> torch.Tensor:
    if stats is None:
        raise ValueError("Wanda needs calibration statistics (column norms of the layer input)")
    return weight.abs().float() * stats.column_norms.to(weight.device).unsqueeze(0)


METHOD = Method("wanda", NORMS, "row", score, prune_by_score(score),
                "|W| * ||X||_2 per output row, calibrated, no weight update")
