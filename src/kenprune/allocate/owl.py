"""OWL (Yin et al. 2024): blocks with more outlier scores keep more weights.

Outlier ratio of a block = % of its element-wise scores above M times their mean; ratios
follow by the shared mapping (min-max to [0, 2*lambda] density, shifted to the target).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import KenpruneError
from .layers import Layer, block_scores, block_sizes, per_layer
from .mapping import scores_to_ratios


def outlier_ratio(scores: torch.Tensor, m: float) -> float:
    """Percentage of entries greater than m * mean(scores)."""
    scores = scores.reshape(-1).double()
    return 100.0 * float((scores > m * scores.mean()).double().mean())


def owl(layers: Sequence[Layer], target: float, m: float = 5.0, lam: float = 0.08) -> dict[str, float]:
    if not m > 0:
        raise KenpruneError(f"OWL's M must be > 0, got {m}")
    ratios_by_outliers = [outlier_ratio(s, m) for s in block_scores(layers)]
    ratios = scores_to_ratios(ratios_by_outliers, block_sizes(layers), target, lam, higher="denser")
    return per_layer(layers, ratios)
