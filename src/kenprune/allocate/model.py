"""The adapter between allocators and a model: its block Linears as `Layer`s, scored lazily."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..models.blocks import block_linears, find_blocks, linear_weight
from .layers import Layer


def model_layers(model: nn.Module, scores: Mapping[str, torch.Tensor | Callable[[], torch.Tensor]] | None = None
                 ) -> list[Layer]:
    """Every Linear of the model's repeated blocks, in order, with its scores when given (a tensor, or what
    reads it from disk)."""
    blocks_name, blocks = find_blocks(model)
    layers = []
    for i, block in enumerate(blocks):
        for name, module in block_linears(block, f"{blocks_name}.{i}" if blocks_name else str(i)).items():
            given = None if scores is None else scores[name]
            layers.append(Layer(name, i, tuple(linear_weight(module).shape), None if callable(given) else given,
                                load=given if callable(given) else None))
    return layers


def layer_source(model: nn.Module, calibration: Any = None, *, method: str = "wanda",
                 progress: bool = True, dtype: str | None = None, batch_size: int | None = None
                 ) -> Callable[[bool], list[Layer]]:
    """For `resolve_allocation`: the layers, with a dense scoring pass only if the allocator needs one."""
    def source(needs_scores: bool) -> list[Layer]:
        if not needs_scores:
            return model_layers(model)
        from ..engine.elementwise import layer_scores

        options = {} if batch_size is None else {"batch_size": batch_size}
        return model_layers(model, layer_scores(model, calibration, method=method, progress=progress, dtype=dtype,
                                                **options))

    return source
