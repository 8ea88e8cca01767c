"""SparseGPT (Frantar & Alistarh 2023): OBS pruning with one shared Hessian, 128-column blocks.

H = 2 X X^T / n, 1 % dampening, upper Cholesky factor of H^-1, the mask chosen adaptively
once per column block by saliency w^2 / [chol(H^-1)]_jj^2, and the error of every pruned
column spread over the columns not yet processed (lazy batch updates between blocks).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import KenpruneError
from .base import HESSIAN, InputStats, Method, PruneResult
from .patterns import Pattern, nm_mask, unstructured_mask

BLOCKSIZE = 128
PERCDAMP = 0.01


def _prepared(weight: torch.Tensor, stats: InputStats | None, percdamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 copy of W with dead columns zeroed, upper Cholesky factor of the damped H^-1)."""
    if stats is None or stats.hessian is None:
        raise ValueError("SparseGPT needs the Hessian of the layer input")
    W = weight.detach().float().clone()
    H = stats.hessian.to(W.device, copy=True)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H.diagonal().add_(percdamp * torch.mean(torch.diag(H)))
    try:
        L = torch.linalg.cholesky(H)
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    except torch.linalg.LinAlgError:
        raise KenpruneError("SparseGPT: the layer Hessian is not positive definite; raise the dampening "
                            "(percdamp) or use more calibration samples") from None
    return W, Hinv


@contextlib.contextmanager
def _few_threads(device: torch.device) -> Iterator[None]:
    """One CPU thread for the column loop: its ops are tiny and thread hand-offs cost more than they save."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def score(weight: torch.Tensor, stats: InputStats | None, percdamp: float = PERCDAMP) -> torch.Tensor:
    """SparseGPT's saliency w^2 / [chol(H^-1)]_jj^2 of every weight (before any update)."""
    W, Hinv = _prepared(weight, stats, percdamp)
    return W.square() / torch.diag(Hinv).square().unsqueeze(0)


def prune(weight: torch.Tensor, stats: InputStats | None, *, sparsity: float, pattern: Pattern,
          group: str = "block", blocksize: int = BLOCKSIZE, percdamp: float = PERCDAMP) -> PruneResult:
    """Prune `weight` [out, in] with OBS updates; group `block` (the paper) or `row` (exact per row)."""
    if group not in ("block", "row"):
        raise KenpruneError(f"SparseGPT compares within 128-column blocks; --group must be block or row, not {group!r}")
    W, Hinv = _prepared(weight, stats, percdamp)
    cols = W.shape[1]
    if pattern.is_nm:
        if cols % pattern.m:
            raise KenpruneError(f"a layer has {cols} input columns, not a multiple of M={pattern.m}")
        blocksize = max(pattern.m, blocksize // pattern.m * pattern.m)  # N:M groups never straddle blocks
    with _few_threads(W.device):
        W, pruned = _fasterprune(W.T.contiguous(), Hinv, sparsity, pattern, group, blocksize)
    return PruneResult(W.to(weight.dtype), pruned)


def _fasterprune(WT: torch.Tensor, Hinv: torch.Tensor, sparsity: float, pattern: Pattern, group: str,
                 blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT's column loop on W^T [in, out] (each column update then touches contiguous memory).

    Returns (W', prune mask), both [out, in].
    """
    cols = WT.shape[0]
    prunedT = torch.zeros_like(WT, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = WT[i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        if pattern.is_nm:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        else:
            saliency = (W1.square() / d.square().unsqueeze(1)).T
            mask1 = unstructured_mask(saliency, sparsity, "matrix" if group == "block" else "row").T
        for i in range(i2 - i1):
            if pattern.is_nm and i % pattern.m == 0:
                window = W1[i:i + pattern.m].square() / d[i:i + pattern.m].square().unsqueeze(1)
                mask1[i:i + pattern.m] = nm_mask(window.T, pattern.n, pattern.m).T
            w = W1[i]
            drop = mask1[i]
            Q1[i] = w.masked_fill(drop, 0)
            err = w.masked_fill(~drop, 0).div_(d[i])  # (w - q) / d
            W1[i:].addr_(Hinv1[i, i:], err, alpha=-1)
            Err1[i] = err
        WT[i1:i2] = Q1
        prunedT[i1:i2] = mask1
        WT[i2:] -= Hinv[i1:i2, i2:].T @ Err1  # lazy batch update of the later columns
    return WT.T, prunedT.T


METHOD = Method("sparsegpt", HESSIAN, "block", score, prune,
                "OBS reconstruction with the input Hessian, 128-column adaptive masks, weight updates")
