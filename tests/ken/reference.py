"""KEN written directly from the description (algorithms.md 1.2), one row at a time, in numpy.

The official pool-deletion loop is kept as is: the pool stays in original order, np.argmin
returns its first minimum, so ties go to the lowest original index. Only the documented
fixes differ from the official code: kept = the chosen INDICES, k is clipped to n, and a
constant row (bandwidth 0) gets density 0 instead of a scikit-learn error.
"""
from __future__ import annotations

import math

import numpy as np

NORMS = {"gaussian": 1 / math.sqrt(2 * math.pi), "tophat": 0.5, "epanechnikov": 0.75,
         "exponential": 0.5, "linear": 1.0, "cosine": math.pi / 4}


def profile(kernel: str, u: np.ndarray) -> np.ndarray:
    a = np.abs(u)
    inside = a < 1
    return {
        "gaussian": lambda: np.exp(-0.5 * u * u),
        "tophat": lambda: inside.astype(float),
        "epanechnikov": lambda: np.where(inside, 1 - u * u, 0.0),
        "exponential": lambda: np.exp(-a),
        "linear": lambda: np.where(inside, 1 - a, 0.0),
        "cosine": lambda: np.where(inside, np.cos(np.pi * u / 2), 0.0),
    }[kernel]()


def ken_row_reference(row, k: int, kernel: str = "gaussian") -> np.ndarray:
    """Boolean mask of the kept entries of one row."""
    w = np.asarray(row, dtype=np.float64)
    n = w.size
    k = min(k, n)
    h = abs(1.06 * w.std() * n ** (-1 / 5))
    grid = np.linspace(w.min(), w.max(), k)
    if h > 0:
        dens = np.round(NORMS[kernel] / h * profile(kernel, (grid[:, None] - w[None, :]) / h).mean(axis=1))
    else:
        dens = np.zeros(k)
    order = sorted(range(k), key=lambda j: (-dens[j], j))  # density descending, ties by grid position
    pool, index = w.copy(), np.arange(n)
    mask = np.zeros(n, dtype=bool)
    for j in order:
        i = int(np.argmin(np.abs(pool - grid[j])))
        mask[index[i]] = True
        pool, index = np.delete(pool, i), np.delete(index, i)
    return mask


def ken_rows_reference(rows, k: int, kernel: str = "gaussian") -> np.ndarray:
    rows = np.asarray(rows)
    return np.stack([ken_row_reference(r, k, kernel) for r in rows.reshape(rows.shape[0], -1)])


def ken_row_official(row, k: int, kernel: str = "gaussian") -> np.ndarray:
    """The official itsmattei/KEN per-row code path (scikit-learn KDE, value membership), for comparison.

    Differs from KEN-as-specified only where the official code is buggy: rows with duplicated
    values keep more than k entries, and k > n or a constant row raise.
    """
    from sklearn.neighbors import KernelDensity

    w = np.asarray(row, dtype=np.float64)
    h = abs(1.06 * w.std() * w.size ** (-1 / 5))
    kde = KernelDensity(kernel=kernel, bandwidth=h).fit(w.reshape(-1, 1))
    grid = np.linspace(w.min(), w.max(), k)
    dens = np.round(np.exp(kde.score_samples(grid.reshape(-1, 1))))
    order = [j for level in range(int(dens.max()), -1, -1) for j in np.flatnonzero(dens == level)]
    pool, chosen = w.copy(), []
    for j in order:
        i = int(np.argmin(np.abs(pool - grid[j])))
        chosen.append(pool[i])
        pool = np.delete(pool, i)
    return np.isin(w, chosen)
