"""KEN's per-row selection as a pure, vectorised function on tensors (the official algorithm, exactly).

For one row w of fine-tuned values (length n) and a kept count k <= n:

1. h = |1.06 * std(w) * n^(-1/5)| (population std); a KDE with that bandwidth is fitted on w.
2. k grid points g_j = min + j * (max - min) / (k - 1), the last one exactly max (numpy's linspace).
3. Densities at the grid points, rounded half-to-even to integers (np.round); grid points are
   visited by density descending, ties by grid position ascending.
4. Each grid point takes the nearest not-yet-taken value of w. The official code deletes taken
   values from a pool kept in the row's original order and calls np.argmin(|pool - g|), which
   returns the FIRST minimum of the pool: among values at equal distance it takes the one with
   the lowest ORIGINAL index (duplicated values, or two values exactly mid-way around g).
5. Kept = the k taken INDICES (official code: value membership, which keeps > k with duplicates).

Vectorisation: each row is sorted once (stable, so equal values are in original-index order);
the k grid points are k steps, each across all rows at once. The nearest free value on either
side of g is found with two union-find "next free position" pointer tables (path halving), so a
step is O(rows) tensor work regardless of how many values are taken. Distances are float64.

Rows whose values are all equal (std 0, the official code raises) are defined by the same greedy
with every distance 0: they keep their first min(k, n) indices. Rows with k >= n keep everything.
"""
from __future__ import annotations

import math

import torch

from .kernels import KERNELS, Kernel



def bandwidth(rows: torch.Tensor) -> torch.Tensor:
    """Silverman's normal-reference bandwidth per row, as the official code: |1.06 sigma n^(-1/5)|."""
    n = rows.shape[-1]
    return (1.06 * rows.std(dim=-1, unbiased=False) * n ** -0.2).abs()


def grid_points(lo: torch.Tensor, hi: torch.Tensor, k: int) -> torch.Tensor:
    """k evenly spaced points per row over [lo, hi], computed as numpy.linspace does ([B, k], float64)."""
    lo, hi = lo.double(), hi.double()
    if k == 1:
        return lo[:, None].clone()
    step = (hi - lo) / (k - 1)
    grid = torch.arange(k, dtype=torch.float64)[None, :] * step[:, None] + lo[:, None]
    grid[:, -1] = hi
    return grid


def _profile_mean(xs: torch.Tensor, gs: torch.Tensor, kernel: Kernel, chunk_elements: int) -> torch.Tensor:
    """mean_i K(gs[b, j] - xs[b, i]) for every row b and grid point j, chunked to bound memory."""
    B, n = xs.shape
    k = gs.shape[1]
    out = torch.empty(B, k, dtype=xs.dtype)
    cols = max(1, min(k, chunk_elements // n))
    rows = max(1, chunk_elements // (cols * n))
    for b in range(0, B, rows):
        x = xs[b:b + rows, None, :]
        for j in range(0, k, cols):
            u = gs[b:b + rows, j:j + cols, None] - x
            out[b:b + rows, j:j + cols] = kernel.profile(u).mean(dim=-1)
    return out


def rounded_density(rows: torch.Tensor, grid: torch.Tensor, kernel: str | Kernel = "gaussian", *,
                    chunk_elements: int = 1 << 19) -> torch.Tensor:
    """KDE of each row (fitted on the row) at its grid points, rounded to integers: [B, k] float64.

    Smooth kernels are evaluated in float32 with a rigorous per-point error bound; the few points
    whose value lies within that bound of a rounding boundary (x.5) are recomputed in float64, so
    the rounded result equals the float64 evaluation. Rows with zero bandwidth get density 0.
    """
    kernel = KERNELS.get(kernel) if isinstance(kernel, str) else kernel
    x = rows.double()
    h = bandwidth(x)
    flat = ~(h > 0) | ~torch.isfinite(h)
    h = torch.where(flat, torch.ones_like(h), h)
    mu = x.mean(dim=1, keepdim=True)
    xs = (x - mu) / h[:, None]
    gs = (grid - mu) / h[:, None]
    scale = (kernel.norm / h)[:, None]
    if kernel.smooth:
        dens = scale * _profile_mean(xs.float(), gs.float(), kernel, chunk_elements).double()
        # |K'| <= 2 for every smooth kernel; float32 inputs carry relative error <= 2^-24 each,
        # and a float32 mean over n terms adds <= ~1e-6 relative error.
        reach = torch.maximum(xs.abs().amax(dim=1), gs.abs().amax(dim=1))[:, None]
        tol = scale * 2.0 ** -20 * (reach + 2) + 1e-5 * dens.abs()
        unsure = (dens - (dens.floor() + 0.5)).abs() <= tol
        if unsure.any():
            b, j = unsure.nonzero(as_tuple=True)
            exact = _profile_mean(xs[b], gs[b, j][:, None], kernel, chunk_elements)[:, 0]
            dens[b, j] = scale[b, 0] * exact
    else:
        dens = scale * _profile_mean(xs, gs, kernel, chunk_elements)
    dens = torch.where(flat[:, None], torch.zeros_like(dens), dens)
    return torch.round(dens)


def _find(parent: torch.Tensor, query: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Root of each query in a batched union-find table (a free slot points to itself); path halving."""
    q = query
    while True:
        p = parent[batch, q]
        if torch.equal(p, q):
            return q
        pp = parent[batch, p]
        parent[batch, q] = pp
        q = pp


def greedy_match(sorted_rows: torch.Tensor, perm: torch.Tensor, grid: torch.Tensor,
                 order: torch.Tensor) -> torch.Tensor:
    """Grid points in `order` each take the nearest free value (ties: lowest original index).

    sorted_rows: [B, n] float64 sorted ascending (stable); perm: their original indices;
    grid: [B, k] float64; order: [B, k] visiting order. Returns taken [B, n] in SORTED positions.
    """
    B, n = sorted_rows.shape
    k = grid.shape[1]
    batch = torch.arange(B)
    slots = torch.arange(n + 1).expand(B, n + 1)
    right = slots.clone()  # right[b, p] == p: sorted position p is free (p = n: "none" sentinel)
    left = slots.clone()  # left[b, p + 1] == p + 1: position p is free (index 0: "none" sentinel)
    # first sorted position of each run of equal values (equal values are in original-index order)
    starts = torch.ones(B, n, dtype=torch.bool)
    starts[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    run_start = torch.where(starts, torch.arange(n).expand(B, n), 0).cummax(dim=1).values
    targets = grid.gather(1, order)
    insert = torch.searchsorted(sorted_rows, grid, side="left").gather(1, order)  # first value >= g
    inf = torch.tensor(math.inf, dtype=torch.float64)
    taken = torch.zeros(B, n, dtype=torch.bool)
    for t in range(k):
        g = targets[:, t]
        s = insert[:, t]
        r = _find(right, s, batch)  # nearest free value >= g
        has_r = r < n
        r_c = r.clamp(max=n - 1)
        l_plus = _find(left, s, batch)  # (nearest free value < g) + 1, 0 if none
        has_l = l_plus > 0
        l_c = (l_plus - 1).clamp(min=0)
        l_c = _find(right, run_start[batch, l_c], batch)  # first free copy of that value
        dist_r = torch.where(has_r, sorted_rows[batch, r_c] - g, inf)
        dist_l = torch.where(has_l, g - sorted_rows[batch, l_c], inf)
        go_left = (dist_l < dist_r) | ((dist_l == dist_r) & (perm[batch, l_c] < perm[batch, r_c]))
        c = torch.where(go_left, l_c, r_c)
        taken[batch, c] = True
        right[batch, c] = c + 1
        left[batch, c + 1] = c
    return taken


def ken_rows(rows: torch.Tensor, k: int, kernel: str = "gaussian", *, chunk_elements: int = 1 << 19) -> torch.Tensor:
    """Boolean mask [B, n] of the entries KEN keeps in each row (exactly min(k, n) per row).

    rows: [B, n] fine-tuned values (any float dtype; never modified).
    """
    if rows.dim() != 2:
        raise ValueError(f"ken_rows expects [rows, n], got shape {tuple(rows.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    B, n = rows.shape
    if k >= n:
        return torch.ones(B, n, dtype=torch.bool)
    x = rows.detach().to("cpu", torch.float64)
    sorted_rows, perm = torch.sort(x, dim=1, stable=True)
    grid = grid_points(sorted_rows[:, 0], sorted_rows[:, -1], k)
    dens = rounded_density(x, grid, kernel, chunk_elements=chunk_elements)
    order = torch.argsort(-dens, dim=1, stable=True)
    taken = greedy_match(sorted_rows, perm, grid, order)
    return torch.zeros_like(taken).scatter_(1, perm, taken)


def ken_rows_chunked(rows: torch.Tensor, k: int, kernel: str = "gaussian", *,
                     max_elements: int = 1 << 23, progress=None) -> torch.Tensor:
    """ken_rows over row chunks of at most `max_elements` values (bounds memory to ~50x that in bytes)."""
    B, n = rows.shape
    step = max(1, max_elements // max(n, 1))
    out = torch.empty(B, n, dtype=torch.bool)
    for b in range(0, B, step):
        out[b:b + step] = ken_rows(rows[b:b + step], k, kernel)
        if progress is not None:
            progress(min(step, B - b) * n)
    return out


def as_rows(tensor: torch.Tensor) -> torch.Tensor:
    """KEN's view of a tensor as rows: a 1-D tensor is one row; otherwise rows = first dimension."""
    return tensor.reshape(1, -1) if tensor.dim() <= 1 else tensor.reshape(tensor.shape[0], -1)


def ken_mask(finetuned: torch.Tensor, k: int, kernel: str = "gaussian") -> torch.Tensor:
    """Mask (shape of `finetuned`) of the entries KEN keeps: min(k, row length) per row."""
    return ken_rows_chunked(as_rows(finetuned), k, kernel).reshape(finetuned.shape)


def ken_merge(pretrained: torch.Tensor, finetuned: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A new tensor: fine-tuned values where `mask`, pre-trained values elsewhere (inputs untouched)."""
    if pretrained.shape != finetuned.shape:
        raise ValueError(f"shape mismatch: {tuple(pretrained.shape)} vs {tuple(finetuned.shape)}")
    return torch.where(mask.to(finetuned.device), finetuned, pretrained.to(finetuned.dtype))


def ken_tensor(pretrained: torch.Tensor, finetuned: torch.Tensor, k: int,
               kernel: str = "gaussian") -> tuple[torch.Tensor, torch.Tensor]:
    """(optimized tensor, kept mask) for one tensor: KEN's per-tensor operation."""
    mask = ken_mask(finetuned, k, kernel)
    return ken_merge(pretrained, finetuned, mask), mask
