"""KEN's per-row selection as a pure function on tensors (the official algorithm, exactly, and fast).

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

The selection itself is compiled (native.py, numba): rows run in parallel, each sorted once, with
union-find "next free position" tables for the greedy and a binned Gaussian density that is made
exact where rounding could tell (see native.py). This module is its tensor-level interface.

Rows whose values are all equal (std 0, the official code raises) are defined by the same greedy
with every distance 0: they keep their first min(k, n) indices. Rows with k >= n keep everything.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .kernels import KERNELS


@contextlib.contextmanager
def selection_threads(threads: int | None):
    """Run KEN's compiled selection on `threads` threads (None: all cores), restoring the setting after."""
    import numba

    before = numba.get_num_threads()
    if threads:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def ken_rows(rows: torch.Tensor, k: int, kernel: str = "gaussian") -> torch.Tensor:
    """Boolean mask [B, n] of the entries KEN keeps in each row (exactly min(k, n) per row).

    rows: [B, n] fine-tuned values (any float dtype, any device; never modified).
    """
    from .native import KERNEL_CODES, NORMS, ken_rows_native

    if rows.dim() != 2:
        raise ValueError(f"ken_rows expects [rows, n], got shape {tuple(rows.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    code = KERNEL_CODES[KERNELS.get(kernel).name]
    values = np.ascontiguousarray(rows.detach().to("cpu", torch.float64).numpy())
    return torch.from_numpy(ken_rows_native(values, int(k), code, NORMS[code]))


def ken_rows_chunked(rows: torch.Tensor, k: int, kernel: str = "gaussian", *,
                     max_elements: int = 1 << 23, progress=None) -> torch.Tensor:
    """ken_rows over row chunks of at most `max_elements` values (bounds memory to ~10x that in bytes)."""
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
