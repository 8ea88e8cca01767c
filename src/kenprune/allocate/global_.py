"""Global allocation: one score threshold across every prunable weight of the model.

Each layer's ratio is the fraction of its scores below the threshold. Wanda scores are not
comparable across layers (activation norms grow with depth), which is why global is the
worst allocation in the OWL and DSA tables; it is kept as the reference point.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .layers import Layer
from .mapping import check_target, fit_to_target


def global_threshold(layers: Sequence[Layer], target: float) -> dict[str, float]:
    target = check_target(target)
    flat = [layer.scores.detach().reshape(-1).float() for layer in layers]
    total = sum(f.numel() for f in flat)
    k = int(round(target * total))
    if k == 0:
        return {layer.name: 0.0 for layer in layers}
    threshold = torch.cat(flat).kthvalue(k).values
    raw = [float((f <= threshold).sum()) / f.numel() for f in flat]
    ratios = fit_to_target(raw, [layer.numel for layer in layers], target)
    return {layer.name: float(r) for layer, r in zip(layers, ratios)}
