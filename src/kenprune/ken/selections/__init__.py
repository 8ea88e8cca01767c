"""Row selections: which k entries of each row keep their fine-tuned value (the rest return to the
pre-trained value). One registry, used by `kenprune ken --selection` and by the quality benchmark;
tests/contract holds every entry to the same behaviours (exactly k per row, deterministic for a
seed, reset entries equal to the pre-trained ones).

An entry is a `Selection`: what each row's choice looks at (`on`: the fine-tuned values, the deltas
fine-tuned - pre-trained, their magnitudes), the per-row chooser (pure, on [rows, n] tensors) and
whether kept deltas are rescaled (DARE). One file per family: ken.py (the paper's KEN and its
delta variant), magnitude.py (largest |delta|, largest |fine-tuned|), random.py (random, DARE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...registry import Registry

# (rows [B, n], k, kernel, generator) -> bool mask [B, n] with exactly min(k, n) True per row
Chooser = Callable[[torch.Tensor, int, str, torch.Tensor | None], torch.Tensor]
ON = {
    "finetuned": lambda pre, ft: ft,
    "delta": lambda pre, ft: ft - pre,
    "|delta|": lambda pre, ft: (ft - pre).abs(),
    "|finetuned|": lambda pre, ft: ft.abs(),
}


@dataclass(frozen=True)
class Selection:
    name: str
    on: str            # key of ON: what the chooser sees of each row
    choose: Callable[..., torch.Tensor]  # (rows, k, *, kernel, generator) -> mask
    rescale: bool = False  # DARE: kept deltas are multiplied by n / k (= 1 / (1 - p), p the drop rate)
    seeded: bool = False   # the choice depends on the seed
    label: str = ""        # how tables and reports name it

    def title(self) -> str:
        return self.label or self.name

    def scores(self, pre: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        """What the chooser sees for one tensor pair."""
        return ON[self.on](pre.detach(), ft.detach())

    def mask(self, pre: torch.Tensor, ft: torch.Tensor, k: int, *, kernel: str = "gaussian",
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Kept mask of [rows, n] row pairs (pure: inputs untouched)."""
        return self.choose(self.scores(pre, ft), k, kernel=kernel, generator=generator)


def kept_values(pre: torch.Tensor, ft: torch.Tensor, mask: torch.Tensor, k_row: int, n: int,
                rescale: bool) -> torch.Tensor:
    """The values the optimized tensor holds at the kept entries: fine-tuned, or for DARE
    pre + (ft - pre) * n / k (the kept deltas rescaled by 1 / (1 - p), p = 1 - k / n)."""
    if not rescale or k_row >= n:
        return ft[mask]
    return (pre + (ft - pre) * (n / k_row))[mask].to(ft.dtype)


def optimized_rows(selection: Selection, pre: torch.Tensor, ft: torch.Tensor, k: int, *, kernel: str = "gaussian",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(optimized rows, kept mask) for [rows, n] pairs: one selection's whole effect on one tensor."""
    mask = selection.mask(pre, ft, k, kernel=kernel, generator=generator)
    out = pre.clone()
    out[mask] = kept_values(pre, ft, mask, min(k, ft.shape[1]), ft.shape[1], selection.rescale)
    return out, mask


ROW_SELECTIONS: Registry[Selection] = Registry("selection")


def label_of(name: str | None) -> str:
    """A selection's display label ("KEN" for records written before selections were recorded)."""
    return ROW_SELECTIONS.get(name).title() if name in ROW_SELECTIONS else (name or "KEN")


def resolve(selection: str, select_on: str = "finetuned") -> Selection:
    """The registry entry for --selection (and KEN's --select-on: `ken` on `delta` is `ken-delta`)."""
    from ...errors import KenpruneError

    if select_on not in ("finetuned", "delta"):
        raise KenpruneError(f"unknown --select-on {select_on!r}; choose finetuned or delta")
    if select_on == "delta":
        if selection not in ("ken", "ken-delta"):
            raise KenpruneError(f"--select-on delta applies to KEN's selection, not {selection!r}")
        selection = "ken-delta"
    return ROW_SELECTIONS.get(selection)


from . import ken, magnitude, random  # noqa: E402,F401  (they register their entries)
