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
Densities are approximated fast (Gaussian: binned and correlated; other smooth kernels: float32)
with a rigorous error bound; grid points whose bound straddles a rounding boundary are recomputed
exactly, so the rounded densities, hence the order, equal a direct float64 evaluation.

Rows whose values are all equal (std 0, the official code raises) are defined by the same greedy
with every distance 0: they keep their first min(k, n) indices. Rows with k >= n keep everything.
"""
from __future__ import annotations

import math

import torch

from .kernels import KERNELS, Kernel

GREEDY_ROWS = 1024  # rows per greedy batch: big enough to amortise per-step overhead, small enough for cache


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


def _binned_gaussian_mean(xs: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, k: int, *, beta: float = 0.05,
                          reach: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Gaussian profile at k evenly spaced points (all in bandwidth units), and an error bound.

    The row is linearly binned onto a fine grid of s sub-steps per grid step (sub-step <= beta) and
    correlated with the sampled kernel (a batched matrix-vector product over windows). Linear binning errs by
    at most sub_step^2 / 8 per value (|phi''| <= 1), truncating the kernel at `reach` by phi(reach).
    """
    B, n = xs.shape
    subdiv = torch.ceil(step / beta).clamp(min=1).long()
    mean = torch.empty(B, k, dtype=torch.float64)
    bound = torch.empty(B, dtype=torch.float64)
    for s in subdiv.unique().tolist():
        idx = (subdiv == s).nonzero()[:, 0]
        delta = step[idx] / s
        m = s * (k - 1) + 1
        pos = ((xs[idx] - lo[idx, None]) / delta[:, None]).clamp(0, m - 1)
        left = pos.floor().clamp(max=m - 2)
        frac = pos - left
        left = left.long()
        counts = torch.zeros(idx.numel(), m, dtype=torch.float64)
        counts.scatter_add_(1, left, 1 - frac).scatter_add_(1, left + 1, frac)
        half = int(min(math.ceil(reach / float(delta.min())), m - 1))
        taps = torch.exp(-0.5 * (torch.arange(-half, half + 1, dtype=torch.float64)[None, :] * delta[:, None]) ** 2)
        mean[idx] = _strided_correlation(counts.float(), taps.float(), s, k).double() / n
        bound[idx] = delta ** 2 / 8 + math.exp(-0.5 * reach ** 2)
    return mean, bound


def _strided_correlation(signal: torch.Tensor, taps: torch.Tensor, stride: int, k: int,
                         rows: int = 64) -> torch.Tensor:
    """out[b, j] = sum_l signal[b, j * stride + l - half] * taps[b, l] (zero padded), per row taps: [B, k].

    A batched matrix-vector product over overlapping windows; several times faster than a
    depthwise conv1d on CPU.
    """
    half = (taps.shape[1] - 1) // 2
    out = torch.empty(signal.shape[0], k, dtype=signal.dtype)
    for b in range(0, signal.shape[0], rows):
        padded = torch.nn.functional.pad(signal[b:b + rows], (half, half))
        windows = padded.as_strided((padded.shape[0], k, taps.shape[1]), (padded.shape[1], stride, 1))
        out[b:b + rows] = torch.bmm(windows, taps[b:b + rows, :, None])[..., 0]
    return out


def rounded_density(rows: torch.Tensor, grid: torch.Tensor, kernel: str | Kernel = "gaussian", *,
                    chunk_elements: int = 1 << 19) -> torch.Tensor:
    """KDE of each row (fitted on the row) at its grid points, rounded to integers: [B, k] float64.

    The densities are first approximated (Gaussian: binned convolution; other smooth kernels:
    float32) with a rigorous per-point error bound; the few points whose value lies within that
    bound of a rounding boundary (x.5) are recomputed exactly in float64, so the rounded result
    equals the float64 evaluation. Rows with zero bandwidth get density 0.
    """
    kernel = KERNELS.get(kernel) if isinstance(kernel, str) else kernel
    x = rows.double()
    B, k = grid.shape
    h = bandwidth(x)
    flat = ~(h > 0) | ~torch.isfinite(h)
    h = torch.where(flat, torch.ones_like(h), h)
    mu = x.mean(dim=1, keepdim=True)
    xs = (x - mu) / h[:, None]
    gs = (grid - mu) / h[:, None]
    scale = (kernel.norm / h)[:, None]
    if kernel.name == "gaussian" and k >= 16:
        step = torch.where(flat, torch.ones_like(h), (grid[:, -1] - grid[:, 0]) / (k - 1) / h)
        mean, bound = _binned_gaussian_mean(xs, gs[:, 0], step, k)
        dens = scale * mean
        tol = scale * bound[:, None] + 1e-4 * dens.abs() + 1e-9
    elif kernel.smooth:
        dens = scale * _profile_mean(xs.float(), gs.float(), kernel, chunk_elements).double()
        # |K'| <= 2 for every smooth kernel; float32 inputs carry relative error <= 2^-24 each,
        # and a float32 mean over n terms adds <= ~1e-6 relative error.
        reach = torch.maximum(xs.abs().amax(dim=1), gs.abs().amax(dim=1))[:, None]
        tol = scale * 2.0 ** -20 * (reach + 2) + 1e-5 * dens.abs()
    else:
        dens = scale * _profile_mean(xs, gs, kernel, chunk_elements)
        tol = None
    if tol is not None:
        unsure = ((dens - (dens.floor() + 0.5)).abs() <= tol) & ~flat[:, None]
        if unsure.any():
            b, j = unsure.nonzero(as_tuple=True)
            exact = _profile_mean(xs[b], gs[b, j][:, None], kernel, chunk_elements)[:, 0]
            dens[b, j] = scale[b, 0] * exact
    dens = torch.where(flat[:, None], torch.zeros_like(dens), dens)
    return torch.round(dens)


def _find(parent: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Roots of flat indices in a union-find table (a free slot points to itself), with path halving."""
    q = query
    while True:
        p = parent.take(q)
        if torch.equal(p, q):
            return q
        pp = parent.take(p)
        parent.put_(q, pp)
        q = pp


def greedy_match(sorted_rows: torch.Tensor, perm: torch.Tensor, grid: torch.Tensor,
                 order: torch.Tensor) -> torch.Tensor:
    """Grid points in `order` each take the nearest free value (ties: lowest original index).

    sorted_rows: [B, n] float64 sorted ascending (stable); perm: their original indices;
    grid: [B, k] float64; order: [B, k] visiting order. Returns taken [B, n] in SORTED positions.
    """
    B, n = sorted_rows.shape
    k = grid.shape[1]
    width = n + 1
    # One flat table holds both union-find structures, row b at offset b * width:
    #   right half: slot p is free iff it points to itself (p = n is the "none" sentinel);
    #   left half (offset B * width): slot p + 1 stands for position p (slot 0: "none").
    table = torch.arange(2 * B * width)
    row0 = torch.arange(B) * width  # offset of each row in the right half
    left0 = row0 + B * width
    values = torch.cat([sorted_rows, torch.full((B, 1), math.inf, dtype=torch.float64)], dim=1).reshape(-1)
    original = torch.cat([perm, torch.full((B, 1), n, dtype=perm.dtype)], dim=1).reshape(-1)
    duplicates = bool((sorted_rows[:, 1:] == sorted_rows[:, :-1]).any())
    if duplicates:  # first sorted position of each run of equal values (those are in original-index order)
        starts = torch.ones(B, width, dtype=torch.bool)
        starts[:, 1:n] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
        run_start = (torch.where(starts, torch.arange(width).expand(B, width), 0).cummax(dim=1).values
                     + row0[:, None]).reshape(-1)
    targets = grid.gather(1, order).T.contiguous()
    insert = torch.searchsorted(sorted_rows, grid, side="left").gather(1, order).T.contiguous()  # first >= g
    inf = torch.tensor(math.inf, dtype=torch.float64)
    for t in range(k):
        g = targets[t]
        s = insert[t]
        both = _find(table, torch.cat([row0 + s, left0 + s]))
        r, l_plus = both[:B], both[B:] - B * width  # r: nearest free >= g (flat); l_plus: left slot (flat)
        has_l = l_plus != row0
        l = (l_plus - 1).clamp(min=0)  # nearest free < g, as a flat right-half index (clamped if none)
        l = torch.where(has_l, l, row0)
        if duplicates:
            l = _find(table, run_start.take(l))  # its first free copy: the lowest original index
        pair = torch.cat([l, r])
        v, o = values.take(pair), original.take(pair)
        dist_l = torch.where(has_l, g - v[:B], inf)
        dist_r = v[B:] - g  # inf at the sentinel
        go_left = (dist_l < dist_r) | ((dist_l == dist_r) & (o[:B] < o[B:]))
        c = torch.where(go_left, l, r)
        table.put_(torch.cat([c, c + (B * width + 1)]), torch.cat([c + 1, c + B * width]))
    taken = table[: B * width].view(B, width)[:, :n] != torch.arange(n)[None, :] + row0[:, None]
    return taken


def stable_sort_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted values as float64, original indices) per row; equal values keep their index order.

    Rows representable in float32 sort as unique 64-bit keys (order-preserving value bits, index)
    with numpy's SIMD sort, several times faster than a stable argsort; float64 rows use torch's.
    """
    if rows.dtype == torch.float64 or rows.shape[1] >= 2**32:
        values, perm = torch.sort(rows, dim=1, stable=True)
        return values, perm
    import numpy as np

    bits = (rows.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # signed ints in the floats' order
    keys = (bits.long() << 32) | torch.arange(rows.shape[1])
    perm = torch.from_numpy(np.sort(keys.numpy(), axis=1)) & 0xFFFFFFFF
    return rows.double().gather(1, perm), perm


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
    sorted_rows, perm = stable_sort_rows(rows.detach().to("cpu"))
    grid = grid_points(sorted_rows[:, 0], sorted_rows[:, -1], k)
    dens = rounded_density(x, grid, kernel, chunk_elements=chunk_elements)
    order = torch.argsort(-dens, dim=1, stable=True)
    taken = torch.cat([greedy_match(sorted_rows[b:b + GREEDY_ROWS], perm[b:b + GREEDY_ROWS], grid[b:b + GREEDY_ROWS],
                                    order[b:b + GREEDY_ROWS]) for b in range(0, B, GREEDY_ROWS)])
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
