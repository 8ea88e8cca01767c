"""KEN on whole models: which tensors, tied weights once, the optimized model, and rebuilding it.

The math lives in `select.py` (pure, per row); this module only maps model tensors to rows and back.
Tensors with the same row length and kept count are processed together, so the compiled selection
runs over the rows of many tensors at once, in parallel.
"""
from __future__ import annotations

import copy
import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
from tqdm.auto import tqdm

from ..errors import KenpruneError
from . import SELECTIONS
from .select import as_rows, ken_rows, selection_threads

_BLOCK_NAME = re.compile(r"(^|\.)\d+(\.|$)")


@dataclass(frozen=True)
class KSpec:
    """k: an absolute count per row (int) or a fraction of each row's length (float in (0, 1])."""

    value: float
    fraction: bool

    @classmethod
    def parse(cls, k: "KSpec | int | float | str") -> "KSpec":
        if isinstance(k, KSpec):
            return k
        text = str(k).strip()
        try:
            if text.endswith("%"):
                spec = cls(float(text[:-1]) / 100, True)
            elif isinstance(k, bool):
                raise ValueError
            elif isinstance(k, int) or (isinstance(k, str) and re.fullmatch(r"[+-]?\d+", text)):
                spec = cls(int(text), False)
            else:
                spec = cls(float(text), True)
        except ValueError:
            raise KenpruneError(f"k must be a count per row (e.g. 300), a fraction (0.25) or a percentage "
                                f"(25%), got {k!r}") from None
        if not math.isfinite(spec.value) or spec.value <= 0:
            raise KenpruneError(f"k must be positive, got {k!r}")
        if spec.fraction and spec.value > 1:
            raise KenpruneError(f"a fractional k must be in (0, 1], got {k!r}; give an integer for a count per row")
        return spec

    def per_row(self, n: int) -> int:
        """Kept count for a row of length n (fractions round to nearest, at least 1; counts clip to n)."""
        if self.fraction:
            return max(1, min(n, math.floor(self.value * n + 0.5)))
        return min(n, int(self.value))

    def __str__(self) -> str:
        return f"{self.value:g} of each row" if self.fraction else f"{int(self.value)} per row"


def unique_parameters(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Parameters by their first name (tied weights once) and the other names each one has."""
    params = dict(model.named_parameters())  # deduplicates tied parameters
    by_storage = {(p.data_ptr(), p.shape): name for name, p in params.items()}
    aliases: dict[str, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        first = by_storage.get((tensor.data_ptr(), tensor.shape))
        if first is not None and first != name:
            aliases.setdefault(first, []).append(name)
    return params, aliases


def select_tensors(names: Iterable[str], tensors: str = "all", include: Iterable[str] = (),
                   exclude: Iterable[str] = ()) -> list[str]:
    """Names KEN processes: every tensor (`all`, as the paper) or transformer blocks only (`blocks`:
    names with a numeric layer index, as the official attention variant), then glob include/exclude."""
    if tensors not in SELECTIONS:
        raise KenpruneError(f"unknown tensor selection {tensors!r}; choose one of: {', '.join(SELECTIONS)}")
    include, exclude = list(include or ()), list(exclude or ())
    chosen = []
    for name in names:
        if tensors == "blocks" and not _BLOCK_NAME.search(name):
            continue
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        chosen.append(name)
    return chosen


def check_compatible(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor]) -> None:
    """Same tensor names and shapes, else an error naming the first mismatching tensor."""
    for name, tensor in finetuned.items():
        if name not in pretrained:
            raise KenpruneError(f"tensor {name} of the fine-tuned model is missing from the pre-trained model; "
                                f"the two must share one architecture")
        if pretrained[name].shape != tensor.shape:
            raise KenpruneError(f"tensor {name} has shape {tuple(pretrained[name].shape)} in the pre-trained "
                                f"model but {tuple(tensor.shape)} in the fine-tuned model")
    for name in pretrained:
        if name not in finetuned:
            raise KenpruneError(f"tensor {name} of the pre-trained model is missing from the fine-tuned model; "
                                f"the two must share one architecture")


@dataclass
class KenSelection:
    """Per selected tensor: the kept mask; plus how each tensor was treated."""

    masks: dict[str, torch.Tensor]
    rows: dict[str, int]
    k_row: dict[str, int]
    clipped: list[str] = field(default_factory=list)  # tensors whose rows are shorter than the asked k

    def kept(self) -> int:
        return sum(int(torch.count_nonzero(m)) for m in self.masks.values())


MaskFn = Callable[[torch.Tensor, int], torch.Tensor]  # ([rows, n] fine-tuned values, k) -> [rows, n] bool


def select_masks(finetuned: dict[str, torch.Tensor], names: list[str],
                 k: KSpec | int | float | str | Mapping[str, KSpec], *,
                 kernel: str = "gaussian", mask_fn: MaskFn | None = None, max_elements: int = 1 << 23,
                 threads: int | None = None, progress: bool = True) -> KenSelection:
    """Kept masks for the named tensors; tensors with equal (row length, k) are batched together.

    k: one KSpec for every tensor, or one per tensor name (an allocation, `kenprune.ken.allocation`);
    threads: threads for the compiled selection (None: all cores; rows are independent).
    """
    with selection_threads(threads):
        return _select_masks(finetuned, names, k, kernel, mask_fn, max_elements, progress)


def _select_masks(finetuned: dict[str, torch.Tensor], names: list[str],
                  k: KSpec | int | float | str | Mapping[str, KSpec], kernel: str, mask_fn: MaskFn | None,
                  max_elements: int, progress: bool) -> KenSelection:
    specs = {name: k[name] for name in names} if isinstance(k, Mapping) else dict.fromkeys(names, KSpec.parse(k))
    mask_fn = mask_fn or (lambda rows, kk: ken_rows(rows, kk, kernel))
    groups: dict[tuple[int, int], list[str]] = {}
    result = KenSelection(masks={}, rows={}, k_row={})
    for name in names:
        rows = as_rows(finetuned[name])
        if not bool(torch.isfinite(rows).all()):
            raise KenpruneError(f"tensor {name} of the fine-tuned model holds NaN or infinite values")
        n = rows.shape[1]
        spec = specs[name]
        kk = spec.per_row(n)
        result.rows[name], result.k_row[name] = rows.shape[0], kk
        if not spec.fraction and spec.value > n:
            result.clipped.append(name)
        groups.setdefault((n, kk), []).append(name)
    total = sum(finetuned[name].numel() for name in names)
    bar = tqdm(total=total, desc="KEN", unit="w", unit_scale=True, disable=not progress, leave=False)
    for (n, kk), members in groups.items():
        views = [as_rows(finetuned[name].detach()) for name in members]
        out = [torch.empty(v.shape, dtype=torch.bool) for v in views]
        step = max(1, max_elements // n)
        for pieces in _row_chunks([v.shape[0] for v in views], step):
            chunk = torch.cat([views[i][a:b] for i, a, b in pieces]).to("cpu")
            mask = torch.ones_like(chunk, dtype=torch.bool) if kk >= n else mask_fn(chunk, kk)
            offset = 0
            for i, a, b in pieces:
                out[i][a:b] = mask[offset:offset + b - a]
                offset += b - a
            bar.update(chunk.numel())
        for name, mask in zip(members, out):
            result.masks[name] = mask.reshape(finetuned[name].shape)
    bar.close()
    return result


def _row_chunks(row_counts: list[int], step: int):
    """Split the concatenated rows of several tensors into chunks of `step` rows: [(tensor, a, b)]."""
    pieces: list[tuple[int, int, int]] = []
    room = step
    for i, count in enumerate(row_counts):
        a = 0
        while a < count:
            b = min(count, a + room)
            pieces.append((i, a, b))
            room -= b - a
            a = b
            if room == 0:
                yield pieces
                pieces, room = [], step
    if pieces:
        yield pieces


def merged_state(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor],
                 masks: dict[str, torch.Tensor], copied: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """New tensors: fine-tuned where kept, pre-trained elsewhere; `copied` names take the fine-tuned tensor."""
    out = {name: torch.where(mask.to(finetuned[name].device), finetuned[name], pretrained[name])
           for name, mask in masks.items()}
    out.update({name: finetuned[name].detach().clone() for name in copied})
    return out


def build_optimized(pretrained_model: torch.nn.Module, new_tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A copy of the pre-trained model with `new_tensors` written in (inputs untouched)."""
    model = copy.deepcopy(pretrained_model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in new_tensors.items():
            params[name].copy_(tensor)
    return model


def differing(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor], names: Iterable[str]) -> list[str]:
    return [name for name in names if not torch.equal(pretrained[name], finetuned[name])]


def tensor_table(selection: KenSelection) -> dict[str, Any]:
    return {name: {"rows": selection.rows[name], "k_per_row": selection.k_row[name],
                   "kept": int(torch.count_nonzero(mask)), "numel": mask.numel(),
                   "kept_fraction": int(torch.count_nonzero(mask)) / max(mask.numel(), 1)}
            for name, mask in selection.masks.items()}
