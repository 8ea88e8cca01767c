"""Confidence intervals for the small evaluation sets kenprune reports (one home; benchmarks use it too)."""
from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if total <= 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))
