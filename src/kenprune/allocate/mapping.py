"""From per-layer numbers to per-layer sparsity ratios that meet a target exactly.

Two steps, shared by every allocator: `scores_to_ratios` is the OWL/DSA mapping (min-max,
scale to [0, 2*lambda], shift to the target mean), and `fit_to_target` clips ratios to
[0, MAX_RATIO] and shifts the unclipped ones so the parameter-weighted mean is the target.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import KenpruneError

# The largest ratio a layer may get: "[0, 1)" with room for at least one kept weight per row.
MAX_RATIO = 0.999


def check_target(target: float) -> float:
    """A sparsity target in [0, 1), or a one-line error."""
    target = float(target)
    if not (0.0 <= target < 1.0) or not np.isfinite(target):
        raise KenpruneError(f"--sparsity must be in [0, 1), got {target}")
    if target > MAX_RATIO:
        raise KenpruneError(f"--sparsity {target} is above the largest per-layer ratio {MAX_RATIO}")
    return target


def check_lambda(lam: float, target: float) -> float:
    """lambda in [0, min(S, 1 - S)]: the ratio window S +- lambda must fit in [0, 1]."""
    lam = float(lam)
    limit = min(target, 1.0 - target)
    if not np.isfinite(lam) or lam < 0:
        raise KenpruneError(f"lambda must be >= 0, got {lam}")
    if lam > limit + 1e-12:
        raise KenpruneError(f"lambda {lam} is too large for target sparsity {target}: ratios would leave "
                            f"[0, 1); use lambda <= {limit:.4g}")
    return lam


def weighted_mean(ratios: Sequence[float], sizes: Sequence[float]) -> float:
    sizes = np.asarray(sizes, dtype=np.float64)
    return float(np.dot(np.asarray(ratios, dtype=np.float64), sizes) / sizes.sum())


def fit_to_target(ratios: Sequence[float], sizes: Sequence[float], target: float,
                  low: float = 0.0, high: float = MAX_RATIO) -> np.ndarray:
    """Clip to [low, high] and shift so that sum(size * ratio) / sum(size) == target.

    The shift c solves sum(size * clip(ratio + c)) = target * sum(size), a monotone piecewise
    linear equation: bisection brackets it, then the unclipped layers absorb the rounding.
    """
    target = check_target(target)
    r = np.asarray(ratios, dtype=np.float64)
    n = np.asarray(sizes, dtype=np.float64)
    if r.shape != n.shape or r.ndim != 1 or r.size == 0:
        raise ValueError(f"ratios {r.shape} and sizes {n.shape} must be equal-length 1-D")
    if not np.all(np.isfinite(r)):
        raise KenpruneError("per-layer ratios contain NaN or infinity")
    if np.any(n <= 0):
        raise ValueError("layer sizes must be positive")
    want = target * n.sum()

    def mass(c: float) -> float:
        return float(np.dot(np.clip(r + c, low, high), n))

    lo_c, hi_c = low - r.max() - 1.0, high - r.min() + 1.0
    for _ in range(200):
        mid = 0.5 * (lo_c + hi_c)
        if mass(mid) < want:
            lo_c = mid
        else:
            hi_c = mid
        if hi_c - lo_c < 1e-15:
            break
    out = np.clip(r + 0.5 * (lo_c + hi_c), low, high)
    free = (out > low) & (out < high)
    if free.any():
        out[free] += (want - float(np.dot(out, n))) / n[free].sum()
        out = np.clip(out, low, high)
    return out


def minmax(values: Sequence[float]) -> np.ndarray:
    """Rescale to [0, 1]; a constant vector maps to zeros (it carries no ordering)."""
    v = np.asarray(values, dtype=np.float64)
    span = v.max() - v.min()
    return np.zeros_like(v) if span == 0 or not np.isfinite(span) else (v - v.min()) / span


def scores_to_ratios(values: Sequence[float], sizes: Sequence[float], target: float, lam: float,
                     higher: str = "denser") -> np.ndarray:
    """The OWL/DSA mapping: min-max, scale to [0, 2*lambda] density, shift to the target mean.

    higher="denser" (OWL: more outliers, keep more) or "sparser" (DSA's code inverts the
    normalised importance, so the search learns the sign through its transform ops).
    """
    if higher not in ("denser", "sparser"):
        raise ValueError(f"higher must be 'denser' or 'sparser', got {higher!r}")
    target = check_target(target)
    lam = check_lambda(lam, target)
    x = minmax(values)
    if higher == "sparser":
        x = 1.0 - x
    density = x * 2.0 * lam
    density = density - weighted_mean(density, sizes) + (1.0 - target)
    return fit_to_target(1.0 - density, sizes, target)
