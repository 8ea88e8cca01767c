"""KEN's per-row selection compiled with numba: one pass per row, rows in parallel.

Per row (length n, kept count k < n), exactly as the official algorithm (see select.py):
bandwidth h = |1.06 * std * n^(-1/5)|; k grid points as numpy.linspace over [min, max];
densities at the grid points rounded half-to-even; grid points visited by density descending
(ties: grid position); each takes the nearest not-yet-taken value (ties: lowest original index).

Speed comes from three choices:
- Gaussian densities are approximated on a fine linear binning of the row: a value at fraction f
  between two bins errs by at most f (1 - f) delta^2 / 2 (|K''| <= 1), plus the kernel truncated
  at `REACH` bandwidths. Only grid points whose density lies within that bound of a rounding
  boundary are summed exactly, so the ROUNDED densities equal the direct float64 evaluation.
  Other kernels are summed directly.
- The row is sorted once (a stable bucket sort); "nearest free value" on either side of a grid
  point comes from two union-find "next free position" tables with path halving, O(k alpha(n)).
- Rows are independent, so they run on all threads (numba prange), with no Python per row.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

BETA = 0.035  # fine-bin width in bandwidth units (the error bound shrinks as its square)
REACH = 6.0  # Gaussian kernel truncated beyond REACH bandwidths (exp(-18) ~ 1.5e-8)
GAUSSIAN, TOPHAT, EPANECHNIKOV, EXPONENTIAL, LINEAR, COSINE = range(6)
KERNEL_CODES = {"gaussian": GAUSSIAN, "tophat": TOPHAT, "epanechnikov": EPANECHNIKOV,
                "exponential": EXPONENTIAL, "linear": LINEAR, "cosine": COSINE}
NORMS = (1 / math.sqrt(2 * math.pi), 0.5, 0.75, 0.5, 1.0, math.pi / 4)  # scikit-learn's constants


@njit(cache=True, inline="always")
def _profile(kernel: int, u: float) -> float:
    a = abs(u)
    if kernel == GAUSSIAN:
        return math.exp(-0.5 * u * u)
    if kernel == EXPONENTIAL:
        return math.exp(-a)
    if a >= 1.0:
        return 0.0
    if kernel == TOPHAT:
        return 1.0
    if kernel == EPANECHNIKOV:
        return 1.0 - u * u
    if kernel == LINEAR:
        return 1.0 - a
    return math.cos(math.pi * u / 2)


@njit(cache=True)
def _exact_density(x: np.ndarray, g: float, h: float, kernel: int, norm: float) -> float:
    """norm / h * mean_i K((g - x_i) / h): the direct float64 evaluation."""
    total = 0.0
    for i in range(x.size):
        total += _profile(kernel, (g - x[i]) / h)
    return norm / h * (total / x.size)


@njit(cache=True)
def _bandwidth(x: np.ndarray) -> float:
    n = x.size
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    var = 0.0
    for i in range(n):
        var += (x[i] - mean) ** 2
    return abs(1.06 * math.sqrt(var / n) * n ** -0.2)


@njit(cache=True)
def _grid(lo: float, hi: float, k: int) -> np.ndarray:
    """numpy.linspace(lo, hi, k), bit for bit."""
    grid = np.empty(k)
    if k == 1:
        grid[0] = lo
        return grid
    step = (hi - lo) / (k - 1)
    for j in range(k):
        grid[j] = j * step + lo
    grid[k - 1] = hi
    return grid


@njit(cache=True, fastmath=True)
def _binned_gaussian(x: np.ndarray, lo: float, h: float, step_h: float, k: int) -> tuple[np.ndarray, float]:
    """Mean Gaussian profile at the k grid points (approximate) and its rigorous error bound."""
    n = x.size
    s = max(1, int(math.ceil(step_h / BETA)))
    delta = step_h / s
    m = s * (k - 1) + 1
    counts = np.zeros(m)
    scale = 1.0 / (h * delta)
    spread = 0.0  # sum of frac (1 - frac): value i's interpolation error is <= frac (1 - frac) delta^2 / 2
    for i in range(n):
        pos = min(max((x[i] - lo) * scale, 0.0), m - 1.0)
        left = min(int(pos), m - 2)
        frac = pos - left
        counts[left] += 1.0 - frac
        counts[left + 1] += frac
        spread += frac * (1.0 - frac)
    half = min(int(math.ceil(REACH / delta)), m - 1)
    taps = np.empty(2 * half + 1)  # exp(-(t delta)^2 / 2) by the recurrence e_t+1 = e_t r_t, r_t+1 = r_t q
    e, r, q = 1.0, math.exp(-0.5 * delta * delta), math.exp(-delta * delta)
    for t in range(half + 1):
        taps[half + t] = taps[half - t] = e
        e *= r
        r *= q
    mean = np.empty(k)
    for j in range(k):
        c = j * s
        a, b = max(0, c - half), min(m - 1, c + half)
        window, weights = counts[a:b + 1], taps[a - c + half:b - c + half + 1]  # contiguous: vectorises
        acc = 0.0
        for q in range(window.size):
            acc += window[q] * weights[q]
        mean[j] = acc / n
    return mean, delta * delta / 2 * (spread / n) + math.exp(-0.5 * REACH * REACH)


@njit(cache=True)
def _rounded_density(x: np.ndarray, grid: np.ndarray, h: float, kernel: int, norm: float) -> np.ndarray:
    """The official rounded densities at the grid points (0 for a zero bandwidth)."""
    k, n = grid.size, x.size
    dens = np.zeros(k)
    if not (h > 0.0) or not math.isfinite(h):
        return dens
    step_h = (grid[k - 1] - grid[0]) / max(k - 1, 1) / h
    bins = (step_h / BETA + 1.0) * (k - 1) + 1  # float: a far outlier must not overflow an integer
    binned_cost = bins + k * (2 * REACH / BETA + 1) / 8  # a vectorised multiply-add ~ 1/8 of an exp
    if kernel == GAUSSIAN and k >= 16 and binned_cost < k * n:
        mean, bound = _binned_gaussian(x, grid[0], h, step_h, k)
        for j in range(k):
            d = norm / h * mean[j]
            tol = norm / h * bound + 1e-9 * abs(d) + 1e-12  # + float64 rounding, generously
            if abs(d - (math.floor(d) + 0.5)) <= tol:
                d = _exact_density(x, grid[j], h, kernel, norm)
            dens[j] = np.rint(d)
    else:
        for j in range(k):
            dens[j] = np.rint(_exact_density(x, grid[j], h, kernel, norm))
    return dens


@njit(cache=True, inline="always")
def _find(parent: np.ndarray, q: int) -> int:
    """Root of q in a union-find table where a free slot points to itself (path halving)."""
    while parent[q] != q:
        parent[q] = parent[parent[q]]
        q = parent[q]
    return q


@njit(cache=True)
def _greedy(values: np.ndarray, perm: np.ndarray, grid: np.ndarray, order: np.ndarray, keep: np.ndarray) -> None:
    """Grid points in `order` each take the nearest free value; sets keep[original index] for each.

    Ties (equal float64 distances: duplicated values, a grid point mid-way, or distinct values
    whose distances round to the same number far from g) go to the lowest original index, as the
    official argmin over the pool in original order. Runs of equal values are one step each; a
    step to the next run happens only while its distance stays equal, so usually never.
    """
    n, k = values.size, grid.size
    right = np.arange(n + 1)  # right[p] == p: position p free; n: the "none" sentinel
    left = np.arange(n + 1)  # slot p + 1 stands for position p; slot 0: "none"
    run_start = np.empty(n, dtype=np.int64)  # first sorted position of each run of equal values
    run_end = np.empty(n, dtype=np.int64)  # first position after it
    for p in range(n):
        run_start[p] = run_start[p - 1] if p > 0 and values[p] == values[p - 1] else p
    for p in range(n - 1, -1, -1):
        run_end[p] = run_end[p + 1] if p < n - 1 and values[p] == values[p + 1] else p + 1
    insert = np.empty(k, dtype=np.int64)  # first position with value >= g (grid ascending: one merge walk)
    p = 0
    for j in range(k):
        while p < n and values[p] < grid[j]:
            p += 1
        insert[j] = p
    for t in range(k):
        g = grid[order[t]]
        best, best_dist = -1, math.inf
        r = _find(right, insert[order[t]])
        while r < n:  # runs at or above g, nearest first; r: the run's first free copy
            d = values[r] - g
            if best >= 0 and d != best_dist:
                break
            if best < 0 or perm[r] < perm[best]:
                best, best_dist = r, d
            r = _find(right, run_end[r])
        slot = _find(left, insert[order[t]])
        while slot > 0:  # runs below g, nearest first
            q = _find(right, run_start[slot - 1])  # the run's first free copy: its lowest original index
            d = g - values[q]
            if best < 0 or d < best_dist:
                best, best_dist = q, d
            elif d == best_dist:
                if perm[q] < perm[best]:
                    best = q
            else:
                break
            slot = _find(left, run_start[q])
        right[best] = best + 1
        left[best + 1] = best
        keep[perm[best]] = True


@njit(cache=True)
def _stable_argsort(x: np.ndarray) -> np.ndarray:
    """Stable argsort: a counting sort into n equal-width buckets, then each bucket sorted stably.

    O(n) for the bell-shaped rows of weight matrices; a bucket crowded by outliers falls back to
    mergesort, so the worst case is that of a plain mergesort.
    """
    n = x.size
    lo, hi = x.min(), x.max()
    if not hi > lo:
        return np.arange(n)
    scale = (n - 1) / (hi - lo)
    bucket = np.empty(n, dtype=np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        bucket[i] = min(int((x[i] - lo) * scale), n - 1)
        start[bucket[i] + 1] += 1
    for b in range(n):
        start[b + 1] += start[b]
    fill = start[:n].copy()
    perm = np.empty(n, dtype=np.int64)
    for i in range(n):  # in index order: equal values stay in index order
        perm[fill[bucket[i]]] = i
        fill[bucket[i]] += 1
    for b in range(n):
        a, e = start[b], start[b + 1]
        if e - a <= 1:
            continue
        if e - a > 32:
            segment = perm[a:e].copy()
            perm[a:e] = segment[np.argsort(x[segment], kind="mergesort")]
            continue
        for i in range(a + 1, e):  # insertion sort: moves only past strictly greater values (stable)
            item, v = perm[i], x[perm[i]]
            p = i
            while p > a and x[perm[p - 1]] > v:
                perm[p] = perm[p - 1]
                p -= 1
            perm[p] = item
    return perm


@njit(cache=True)
def _descending_order(dens: np.ndarray) -> np.ndarray:
    """Grid positions by rounded density descending, ties by position (a counting sort on the levels)."""
    k = dens.size
    top = int(dens.max())
    if top > 16 * k:
        return np.argsort(-dens, kind="mergesort")
    start = np.zeros(top + 2, dtype=np.int64)
    for j in range(k):
        start[top - int(dens[j]) + 1] += 1
    for level in range(top + 1):
        start[level + 1] += start[level]
    order = np.empty(k, dtype=np.int64)
    for j in range(k):
        slot = top - int(dens[j])
        order[start[slot]] = j
        start[slot] += 1
    return order


@njit(cache=True, parallel=True)
def ken_rows_native(rows: np.ndarray, k: int, kernel: int, norm: float) -> np.ndarray:
    """Boolean mask [B, n]: the min(k, n) entries KEN keeps in each row of float64 `rows`."""
    B, n = rows.shape
    keep = np.zeros((B, n), dtype=np.bool_)
    for b in prange(B):
        x = rows[b]
        if k >= n:
            keep[b, :] = True
            continue
        perm = _stable_argsort(x)
        values = x[perm]
        grid = _grid(values[0], values[n - 1], k)
        dens = _rounded_density(x, grid, _bandwidth(x), kernel, norm)
        order = _descending_order(dens)
        _greedy(values, perm, grid, order, keep[b])
    return keep
