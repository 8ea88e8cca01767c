"""Per-tensor k from an allocation: kenprune's allocators spread KEN's kept fraction over the tensors.

The allocators (kenprune.allocate) spread a sparsity over layers by their shapes or by element scores;
here a tensor's "layer" is its row matrix and its scores are |fine-tuned - pre-trained|, so `global`
keeps more values per row where the fine-tuning changed more, `owl` where a block's changes hold more
outliers, `er` by shape. The kept fraction over all selected values stays k; each tensor then keeps
round(k_tensor * n) values per row (at least one).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from ..allocate import Allocation, Layer, resolve_allocation
from ..errors import KenpruneError
from .apply import KSpec
from .select import as_rows

_BLOCK_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def block_of(name: str) -> int:
    """The transformer block a tensor belongs to (its first numeric name part), -1 outside the blocks."""
    match = _BLOCK_INDEX.search(name)
    return int(match.group(1)) if match else -1


def allocate_k(pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], names: list[str],
               k: KSpec | str | float, spec: str) -> tuple[dict[str, KSpec], Allocation]:
    """Per tensor, its kept fraction per row under allocation `spec`; and the allocation to record."""
    k = KSpec.parse(k)
    if not k.fraction:
        raise KenpruneError(f"an allocation spreads a kept fraction; give k as a fraction or percentage "
                            f"(e.g. 25%), not a count per row ({int(k.value)})")
    if k.value >= 1:
        raise KenpruneError("k = 100% keeps every value; there is nothing to allocate")

    def layers(with_scores: bool) -> list[Layer]:
        return [Layer(n, block_of(n), tuple(as_rows(finetuned[n]).shape),
                      (finetuned[n].detach().float() - pretrained[n].detach().float()).abs() if with_scores else None)
                for n in names]

    allocation = resolve_allocation(spec, layers, 1.0 - k.value)
    per_tensor = {n: KSpec(1.0 - allocation.ratios[n], True) for n in names}
    return per_tensor, allocation
