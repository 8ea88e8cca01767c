"""Which weights to zero, given element-wise scores: per-matrix, per-row and N:M comparison groups.

Everything is vectorised and deterministic: among equal scores the lower flat index is
pruned first (a stable sort), which matters for weights that were quantised (many ties).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import KenpruneError

GROUPS = ("matrix", "row")


@dataclass(frozen=True)
class Pattern:
    """Unstructured (n = m = 0) or N:M: in every M consecutive input columns of a row, N are zero."""

    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    @property
    def sparsity(self) -> float | None:
        """The sparsity an N:M pattern implies (None when unstructured)."""
        return self.n / self.m if self.is_nm else None

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else "unstructured"

    @classmethod
    def parse(cls, text: "str | Pattern | None") -> "Pattern":
        """`unstructured` (or None) or `N:M` with integers 0 < N < M."""
        if isinstance(text, Pattern):
            return text
        if text is None or str(text).strip().lower() in ("", "unstructured"):
            return cls()
        n_text, sep, m_text = str(text).strip().partition(":")
        try:
            n, m = int(n_text), int(m_text)
        except ValueError:
            n = m = -1
        if not sep or n <= 0 or m <= 0 or n >= m:
            raise KenpruneError(f"bad pattern {text!r}; use `unstructured` or N:M with integers 0 < N < M, e.g. 2:4")
        return cls(n, m)


def check_sparsity(sparsity: float, what: str = "--sparsity") -> float:
    """The sparsity as a float in [0, 1), or a one-line error."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise KenpruneError(f"{what} must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= value < 1.0:
        raise KenpruneError(f"{what} must be in [0, 1) (0.5 = half the weights zeroed), got {value}")
    return value


SORT_BELOW = 64  # groups smaller than this (N:M) are sorted; a sort is cheapest there


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k lowest entries along the last dim (stable: ties -> lower index).

    Groups of SORT_BELOW entries or more take the k-th smallest value and fill its ties in index order:
    the same mask as a stable sort's first k, 1.6x (rows) to 5x (whole matrices) faster on CPU. Small
    groups and NaN scores keep the stable sort."""
    size = scores.shape[-1]
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k <= 0:
        return mask
    if k >= size:
        return mask.fill_(True)
    if size < SORT_BELOW or torch.isnan(scores).any():
        return mask.scatter_(-1, torch.sort(scores, dim=-1, stable=True).indices[..., :k], True)
    threshold = torch.kthvalue(scores, k, dim=-1, keepdim=True).values
    below = scores < threshold
    ties = scores == threshold
    room = k - below.sum(-1, keepdim=True)
    return below | (ties & (ties.cumsum(-1) <= room))


def unstructured_mask(scores: torch.Tensor, sparsity: float, group: str = "row") -> torch.Tensor:
    """Prune mask (True = zero) with floor(size * sparsity) lowest scores per row or per matrix."""
    if group == "row":
        return _lowest(scores, int(scores.shape[-1] * sparsity))
    if group == "matrix":
        return _lowest(scores.reshape(-1), int(scores.numel() * sparsity)).view_as(scores)
    raise KenpruneError(f"unknown comparison group {group!r}; choose one of: {', '.join(GROUPS)}")


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune mask with exactly n zeros (the n lowest scores) in every m consecutive columns of each row."""
    rows, cols = scores.shape
    if cols % m:
        raise KenpruneError(f"a layer has {cols} input columns, not a multiple of M={m}; choose another N:M")
    return _lowest(scores.reshape(rows, cols // m, m), n).view(rows, cols)


def select(scores: torch.Tensor, sparsity: float, pattern: Pattern, group: str = "row") -> torch.Tensor:
    """Prune mask for `scores` [out, in] under a pattern (N:M ignores sparsity and group)."""
    if pattern.is_nm:
        return nm_mask(scores, pattern.n, pattern.m)
    return unstructured_mask(scores, sparsity, group)
