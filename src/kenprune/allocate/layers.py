"""What allocators see of a model: its prunable Linear layers, grouped by decoder block."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Layer:
    """One prunable matrix: its name, decoder block, (out, in) shape, and optional dense-pass scores.

    `scores` are the element-wise pruning scores (|W|, Wanda |W|*||X||, SparseGPT saliency) of
    the dense model; allocators that only need shapes (uniform, ER) work without them.
    """

    name: str
    block: int
    shape: tuple[int, int]
    scores: torch.Tensor | None = None

    @property
    def numel(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])


def blocks(layers: Sequence[Layer]) -> list[list[Layer]]:
    """Layers grouped by block, in block order (the unit OWL and DSA allocate over)."""
    grouped: dict[int, list[Layer]] = {}
    for layer in layers:
        grouped.setdefault(layer.block, []).append(layer)
    return [grouped[b] for b in sorted(grouped)]


def block_sizes(layers: Sequence[Layer]) -> list[int]:
    return [sum(layer.numel for layer in group) for group in blocks(layers)]


def block_scores(layers: Sequence[Layer]) -> list[torch.Tensor]:
    """Per block, the flattened scores of all its layers concatenated (as OWL and DSA use them)."""
    out = []
    for group in blocks(layers):
        missing = [layer.name for layer in group if layer.scores is None]
        if missing:
            raise ValueError(f"layers {missing} carry no scores; this allocator needs a dense scoring pass")
        out.append(torch.cat([layer.scores.detach().reshape(-1).float() for layer in group]))
    return out


def per_layer(layers: Sequence[Layer], block_ratios: Sequence[float]) -> dict[str, float]:
    """Give every layer its block's ratio."""
    ratios = {}
    for group, ratio in zip(blocks(layers), block_ratios, strict=True):
        for layer in group:
            ratios[layer.name] = float(ratio)
    return ratios
