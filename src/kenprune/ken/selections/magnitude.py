"""Keep the k largest of a score per row: |fine-tuned - pre-trained| (magnitude of the change, the
delta-compression baseline) or |fine-tuned| (what KEN's tails resemble)."""
from __future__ import annotations

import torch

from . import ROW_SELECTIONS, Selection


def topk_rows(scores: torch.Tensor, k: int, *, kernel: str = "gaussian", generator=None) -> torch.Tensor:
    """Keep the k largest scores of each row (ties: torch.topk's order, deterministic on CPU)."""
    k = min(k, scores.shape[1])
    idx = scores.topk(k, dim=1).indices
    return torch.zeros(scores.shape, dtype=torch.bool).scatter_(1, idx, True)


ROW_SELECTIONS.add("delta", Selection("delta", "|delta|", topk_rows, label="largest |delta|"),
                   "the k largest |fine-tuned - pre-trained| of each row")
ROW_SELECTIONS.add("finetuned", Selection("finetuned", "|finetuned|", topk_rows, label="largest |fine-tuned|"),
                   "the k largest |fine-tuned| of each row")
