"""The scratch control of "Rethinking the value of network pruning" (Liu et al., ICLR 2019): the pruned
architecture, re-initialized, trained with the same data and the same steps as the recovery of the
pruned weights. If it matches pruned + recovered, the inherited weights were not what mattered.

At the CPU budgets kenprune runs (tens of steps) this is Liu et al.'s Scratch-E with a tiny E: a check that
the inherited weights carry the quality, not a reproduction of their full-training result.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..models.loading import LoadedModel
from ..settings import LoraSettings
from .batches import training_items
from .recover import train_steps


def reinitialize(model: nn.Module, seed: int = 0) -> None:
    """Draw every weight again with the family's own initialization (same shapes, same config)."""
    for item in (*model.modules(), *model.parameters(), *model.buffers()):
        if hasattr(item, "_is_hf_initialized"):
            delattr(item, "_is_hf_initialized")
    torch.manual_seed(seed)
    model.initialize_weights()
    model.tie_weights()


def train_from_scratch(loaded: LoadedModel, data: str, settings: LoraSettings, lr: float, *,
                       progress: bool = True) -> dict[str, Any]:
    """Re-initialize `loaded.model` in place and train all its weights on the recovery's batches and steps
    (token windows for a causal LM, labelled batches and the classification loss for a classifier)."""
    settings = replace(settings, lr=lr).check()
    reinitialize(loaded.model, settings.seed)
    data, batches = training_items(loaded, data, settings)
    model = loaded.model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    summary = train_steps(model, [{"params": params}], batches, settings, desc="scratch", progress=progress)
    model.eval()
    loaded._sha256 = None
    return {**settings.to_dict(), "data": data, "trainable_parameters": sum(p.numel() for p in params), **summary}
