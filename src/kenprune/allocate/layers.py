"""What allocators see of a model: its prunable Linear layers, grouped by decoder block."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

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
    load: Callable[[], torch.Tensor] | None = field(default=None, compare=False, repr=False)  # scores kept on disk

    @property
    def numel(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])

    @property
    def has_scores(self) -> bool:
        return self.scores is not None or self.load is not None

    def score_tensor(self) -> torch.Tensor:
        """The scores, read from disk each time when they live there (a streamed model's): never all held."""
        if self.scores is not None:
            return self.scores
        if self.load is None:
            raise ValueError(f"layer {self.name} carries no scores; this allocator needs a dense scoring pass")
        return self.load()


def blocks(layers: Sequence[Layer]) -> list[list[Layer]]:
    """Layers grouped by block, in block order (the unit OWL and DSA allocate over)."""
    grouped: dict[int, list[Layer]] = {}
    for layer in layers:
        grouped.setdefault(layer.block, []).append(layer)
    return [grouped[b] for b in sorted(grouped)]


def block_sizes(layers: Sequence[Layer]) -> list[int]:
    return [sum(layer.numel for layer in group) for group in blocks(layers)]


def block_scores(layers: Sequence[Layer]) -> Iterator[torch.Tensor]:
    """Per block, the flattened scores of all its layers concatenated (as OWL and DSA use them), one block at a
    time: scores read from disk are held one block at a time."""
    groups = blocks(layers)
    missing = [layer.name for group in groups for layer in group if not layer.has_scores]
    if missing:
        raise ValueError(f"layers {missing} carry no scores; this allocator needs a dense scoring pass")
    for group in groups:
        yield torch.cat([layer.score_tensor().detach().reshape(-1).float() for layer in group])


def per_layer(layers: Sequence[Layer], block_ratios: Sequence[float]) -> dict[str, float]:
    """Give every layer its block's ratio."""
    ratios = {}
    for group, ratio in zip(blocks(layers), block_ratios, strict=True):
        for layer in group:
            ratios[layer.name] = float(ratio)
    return ratios
