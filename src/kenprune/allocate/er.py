"""Erdos-Renyi allocation (Mocanu et al. 2018, Evci et al. 2020): density ~ (n_in + n_out) / (n_in * n_out).

Small matrices (k_proj, v_proj under GQA) stay denser. ER-plus follows Liu et al. 2022's
"ER+" idea of keeping the last layer dense and spreading its budget over the rest with ER
(for an LLM the last pruned Linear; the exact definition in the papers is unverified).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import KenpruneError
from .layers import Layer
from .mapping import check_target, fit_to_target


def er_densities(shapes: Sequence[tuple[int, int]], density: float) -> np.ndarray:
    """Per-matrix densities proportional to the ER score, capped at 1, with mean density `density`."""
    sizes = np.array([o * i for o, i in shapes], dtype=np.float64)
    score = np.array([(o + i) / (o * i) for o, i in shapes], dtype=np.float64)
    want = density * sizes.sum()
    lo, hi = 0.0, 1.0 / score.min() + 1.0
    for _ in range(200):  # the kept mass sum(size * min(1, eps * score)) grows with eps
        eps = 0.5 * (lo + hi)
        if float(np.dot(np.minimum(1.0, eps * score), sizes)) < want:
            lo = eps
        else:
            hi = eps
    return np.minimum(1.0, 0.5 * (lo + hi) * score)


def er(layers: Sequence[Layer], target: float) -> dict[str, float]:
    target = check_target(target)
    sizes = [layer.numel for layer in layers]
    ratios = fit_to_target(1.0 - er_densities([layer.shape for layer in layers], 1.0 - target), sizes, target)
    return {layer.name: float(r) for layer, r in zip(layers, ratios)}


def er_plus(layers: Sequence[Layer], target: float) -> dict[str, float]:
    target = check_target(target)
    if len(layers) < 2:
        raise KenpruneError("ER-plus needs at least two prunable layers")
    *rest, last = layers
    total = sum(layer.numel for layer in layers)
    rest_target = target * total / (total - last.numel)
    if rest_target > 0.999:
        raise KenpruneError(f"ER-plus cannot keep {last.name} dense at sparsity {target}; use er")
    return {**er(rest, rest_target), last.name: 0.0}
