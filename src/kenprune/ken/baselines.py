"""Baselines that keep the same count per row as KEN, for the quality benchmark (row mask functions)."""
from __future__ import annotations

from typing import Callable

import torch


def topk_rows(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest scores of each row (e.g. |fine-tuned - pre-trained|)."""
    idx = scores.topk(k, dim=1).indices
    return torch.zeros(scores.shape, dtype=torch.bool).scatter_(1, idx, True)


def random_rows(seed: int = 0) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Keep k uniformly random entries of each row (reproducible by seed)."""
    gen = torch.Generator().manual_seed(seed)

    def choose(rows: torch.Tensor, k: int) -> torch.Tensor:
        idx = torch.rand(rows.shape, generator=gen).argsort(dim=1)[:, :k]
        return torch.zeros(rows.shape, dtype=torch.bool).scatter_(1, idx, True)

    return choose


def delta_scores(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|fine-tuned - pre-trained| per tensor: what the magnitude-of-change baseline ranks."""
    return {name: (finetuned[name].detach() - pretrained[name].detach()).abs() for name in finetuned}
