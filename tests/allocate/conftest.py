"""Small hand-made layers for the allocator and search tests (mechanics, not model quality)."""
from __future__ import annotations

import pytest
import torch

from kenprune.allocate import Layer

# A Llama-like block in miniature: square attention, narrow GQA k/v, wide MLP.
SHAPES = {"q": (16, 16), "k": (4, 16), "v": (4, 16), "o": (16, 16), "up": (40, 16), "down": (16, 40)}


def make_layers(blocks: int = 8, seed: int = 0, heavy_tail: bool = True) -> list[Layer]:
    g = torch.Generator().manual_seed(seed)
    layers = []
    for b in range(blocks):
        for name, shape in SHAPES.items():
            scores = torch.rand(shape, generator=g) * (1 + b)
            if heavy_tail:  # a block-dependent share of outliers, so OWL and DSA have something to see
                scores = scores + 20.0 * (torch.rand(shape, generator=g) < 0.01 * (b + 1))
            layers.append(Layer(f"blocks.{b}.{name}", b, shape, scores))
    return layers


@pytest.fixture(scope="session")
def layer_factory():
    return make_layers


@pytest.fixture
def layers() -> list[Layer]:
    return make_layers()
