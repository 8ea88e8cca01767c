"""Uniform allocation: every layer gets the target ratio."""
from __future__ import annotations

from typing import Sequence

from .layers import Layer
from .mapping import check_target


def uniform(layers: Sequence[Layer], target: float) -> dict[str, float]:
    target = check_target(target)
    return {layer.name: target for layer in layers}
