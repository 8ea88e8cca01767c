"""Where a model keeps its repeated blocks and their Linears: found by structure, never by attribute path.

The one block finder and the one way to name a block's Linears; GPT-2's Conv1D (weights stored
transposed) is read and written through `linear_weight` / `set_linear_weight`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import KenpruneError


def _signature(module: nn.Module) -> tuple:
    """A module's structure: its type, parameter names and submodule types, not its widths (structured
    pruning leaves blocks of one structure with different widths)."""
    return (type(module).__name__,
            tuple(n for n, _ in module.named_parameters()),
            tuple(type(m).__name__ for m in module.modules()))


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(qualified name, ModuleList) of the repeated blocks: the largest ModuleList of modules of one structure."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({_signature(child) for child in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > 0 and (best is None or size > best[0]):
            best = (size, name, module)
    if best is None:
        raise KenpruneError(f"{type(model).__name__} has no list of identical blocks to prune block by block; "
                            f"give a transformer decoder (Llama, GPT-2, OPT, ...)")
    return best[1], best[2]


def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return None
    return Conv1D


def is_linear(module: nn.Module) -> bool:
    conv1d = _conv1d_class()
    return isinstance(module, nn.Linear) or (conv1d is not None and isinstance(module, conv1d))


def block_linears(block: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """Every Linear (or GPT-2 Conv1D) inside a block, by qualified name."""
    return {f"{prefix}.{name}" if prefix else name: m for name, m in block.named_modules() if is_linear(m)}


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The weight in nn.Linear orientation [out, in] (a view; Conv1D stores [in, out])."""
    return module.weight if isinstance(module, nn.Linear) else module.weight.T


def set_linear_weight(module: nn.Module, weight: torch.Tensor) -> None:
    """Write a weight given as [out, in] in place, whatever the layer's storage orientation."""
    with torch.no_grad():
        linear_weight(module).copy_(weight)


def block_prefix(blocks_name: str, index: int) -> str:
    """The qualified name of block `index` (as in model.named_modules())."""
    return f"{blocks_name}.{index}" if blocks_name else str(index)


def named_block_linears(model: nn.Module) -> list[tuple[int, dict[str, nn.Module]]]:
    """(block index, {qualified name: Linear}) for every repeated block, in order."""
    blocks_name, blocks = find_blocks(model)
    return [(i, block_linears(b, block_prefix(blocks_name, i))) for i, b in enumerate(blocks)]
