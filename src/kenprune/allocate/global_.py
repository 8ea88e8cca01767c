"""Global allocation: one score threshold across every prunable weight of the model.

Each layer's ratio is the fraction of its scores below the threshold. Wanda scores are not
comparable across layers (activation norms grow with depth), which is why global is the
worst allocation in the OWL and DSA tables; it is kept as the reference point.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .layers import Layer
from .mapping import check_target, fit_to_target

_CHUNK = 1 << 22  # elements read at a time: the selection's temporaries stay ~50 MB whatever the model


def _ordered_keys(values: torch.Tensor) -> torch.Tensor:
    """float32 values as int32 keys with the same order (IEEE-754 bits, negatives' magnitude bits flipped)."""
    bits = values.float().contiguous().view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


TensorSource = torch.Tensor | Callable[[], torch.Tensor]  # a tensor, or what reads it (scores kept on disk)


def _flat(source: TensorSource) -> torch.Tensor:
    return (source() if callable(source) else source).detach().reshape(-1)


def kth_smallest(tensors: Sequence[TensorSource], k: int) -> torch.Tensor:
    """The k-th smallest (1-based) float32 value of all `tensors` together, as
    `torch.cat(tensors).kthvalue(k)` gives it, without concatenating them: a radix select over the
    values' bits, two passes of 65,536-bucket histograms (high half, then low half under the chosen
    high half). A tensor may be given by what reads it (a streamed allocation's scores, on disk): then
    one is held at a time, and each is read in chunks."""
    total = sum(_flat(t).numel() for t in tensors)
    if not 1 <= k <= total:
        raise ValueError(f"k = {k} is outside 1..{total}")
    high = None  # the answer's high 16 key bits, once chosen
    for _ in range(2):
        counts = torch.zeros(1 << 16, dtype=torch.int64)
        for source in tensors:
            for chunk in _flat(source).split(_CHUNK):
                keys = _ordered_keys(chunk)
                if high is None:
                    counts += torch.bincount((keys >> 16) + (1 << 15), minlength=1 << 16)
                else:
                    counts += torch.bincount(keys[(keys >> 16) == high] & 0xFFFF, minlength=1 << 16)
        below = torch.cumsum(counts, 0)
        bucket = int(torch.searchsorted(below, torch.tensor(k)))
        k -= int(below[bucket - 1]) if bucket > 0 else 0
        if high is None:
            high = bucket - (1 << 15)
    key = (high << 16) | bucket
    bits = key ^ (0x7FFFFFFF if key < 0 else 0)
    return torch.tensor([bits], dtype=torch.int32).view(torch.float32)[0]


def global_threshold(layers: Sequence[Layer], target: float) -> dict[str, float]:
    target = check_target(target)
    total = sum(layer.numel for layer in layers)
    k = int(round(target * total))
    if k == 0:
        return {layer.name: 0.0 for layer in layers}
    threshold = kth_smallest([layer.score_tensor for layer in layers], k)
    raw = [sum(int((chunk.float() <= threshold).sum()) for chunk in layer.score_tensor().reshape(-1).split(_CHUNK)) /
           layer.numel for layer in layers]
    ratios = fit_to_target(raw, [layer.numel for layer in layers], target)
    return {layer.name: float(r) for layer, r in zip(layers, ratios)}
