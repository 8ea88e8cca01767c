"""KEN as a row selection: the paper's algorithm on the fine-tuned values (default), and the same
algorithm fitted on each row's deltas (fine-tuned - pre-trained), `--select-on delta`."""
from __future__ import annotations

import torch

from ..select import ken_rows
from . import ROW_SELECTIONS, Selection


def ken_choose(rows: torch.Tensor, k: int, *, kernel: str = "gaussian", generator=None) -> torch.Tensor:
    return ken_rows(rows, k, kernel)


ROW_SELECTIONS.add("ken", Selection("ken", "finetuned", ken_choose, label="KEN"),
                   "KEN (the paper): KDE on each row's fine-tuned values, k grid points take their nearest values")
ROW_SELECTIONS.add("ken-delta", Selection("ken-delta", "delta", ken_choose, label="KEN on deltas"),
                   "KEN fitted on each row's deltas (fine-tuned - pre-trained) instead of its values")
