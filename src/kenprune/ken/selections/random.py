"""Random rows: k uniformly random entries of each row; DARE (Yu et al., 2024: drop each delta with
probability p, rescale the kept ones by 1 / (1 - p)) at the same kept count: exactly k random
entries per row (p = 1 - k / n) whose deltas are rescaled by n / k."""
from __future__ import annotations

import torch

from . import ROW_SELECTIONS, Selection


def random_rows(rows: torch.Tensor, k: int, *, kernel: str = "gaussian",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Exactly min(k, n) uniformly random entries of each row, reproducible through `generator`."""
    k = min(k, rows.shape[1])
    idx = torch.rand(rows.shape, generator=generator).argsort(dim=1)[:, :k]
    return torch.zeros(rows.shape, dtype=torch.bool).scatter_(1, idx, True)


ROW_SELECTIONS.add("random", Selection("random", "finetuned", random_rows, seeded=True, label="random"),
                   "k uniformly random entries of each row (by --seed)")
ROW_SELECTIONS.add("dare", Selection("dare", "finetuned", random_rows, rescale=True, seeded=True, label="DARE"),
                   "DARE: k random entries per row, kept deltas rescaled by n/k = 1/(1-p)")
