"""Physical removal: slice the kept channels out of every member, then record the new widths."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..models.blocks import find_blocks
from ..models.families import FamilyAdapter, structured_adapter_for
from .groups import Group

WIDTHS_KEY = "kenprune_block_widths"  # config.json field: per-block widths when they differ by block


@dataclass(frozen=True)
class BlockWidths:
    heads: int
    kv_heads: int
    intermediate: int


def slice_linear(linear: nn.Linear, axis: int, index: torch.Tensor) -> None:
    """Keep only `index` along `axis` (0: output rows, 1: input columns), in place."""
    index = index.to(linear.weight.device)
    linear.weight = nn.Parameter(linear.weight.detach().index_select(axis, index).clone(),
                                 requires_grad=linear.weight.requires_grad)
    if axis == 0:
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.detach().index_select(0, index).clone(),
                                       requires_grad=linear.bias.requires_grad)
        linear.out_features = index.numel()
    else:
        linear.in_features = index.numel()


def remove_units(groups: list[Group], keep: list[torch.Tensor]) -> None:
    """Slice each group's members down to the channels of its kept units."""
    for group, kept in zip(groups, keep):
        if kept.numel() == group.units:
            continue
        for member in group.members:
            slice_linear(member.linear, member.axis, group.keep_channels(member, kept))


def block_widths(model: nn.Module, adapter: FamilyAdapter | None = None) -> list[BlockWidths]:
    adapter = adapter or structured_adapter_for(model)
    d = adapter.head_dim(model.config)
    widths = []
    for block in find_blocks(model)[1]:
        q = adapter.linear(block, adapter.attention, adapter.q)
        k = adapter.linear(block, adapter.attention, adapter.k)
        up = adapter.linear(block, adapter.mlp, adapter.up)
        widths.append(BlockWidths(q.out_features // d, k.out_features // d, up.out_features))
    return widths


def apply_widths(model: nn.Module, widths: list[BlockWidths], adapter: FamilyAdapter | None = None) -> None:
    """Make the modules and the config agree with `widths`.

    Uniform widths go into the plain config fields (reloads with from_pretrained); otherwise the
    config keeps the widest values and lists every block's widths under WIDTHS_KEY. A family that derives
    its head size from the head count (BERT) keeps its original head counts in the config and lists the
    widths whenever heads were removed.
    """
    adapter = adapter or structured_adapter_for(model)
    config = model.config
    d = config.head_dim = adapter.head_dim(config)  # fixed from now on: head counts change, head size never
    for block, w in zip(find_blocks(model)[1], widths):
        adapter.set_heads(block, w.heads, w.kv_heads, d)
    heads_fixed = not adapter.config_head_dim and any(w.heads != adapter.heads(config) for w in widths)
    if not heads_fixed:
        setattr(config, adapter.heads_key, max(w.heads for w in widths))
        setattr(config, adapter.kv_heads_key, max(w.kv_heads for w in widths))
    setattr(config, adapter.intermediate_key, max(w.intermediate for w in widths))
    if len(set(widths)) == 1 and not heads_fixed:
        if hasattr(config, WIDTHS_KEY):
            delattr(config, WIDTHS_KEY)
    else:
        setattr(config, WIDTHS_KEY, [asdict(w) for w in widths])


def resize_to_widths(model: nn.Module, widths: list[BlockWidths], adapter: FamilyAdapter | None = None) -> None:
    """Replace each block's projections with empty ones of the recorded widths (before loading weights)."""
    adapter = adapter or structured_adapter_for(model)
    d = adapter.head_dim(model.config)
    for block, w in zip(find_blocks(model)[1], widths):
        shapes = {
            (adapter.attention, adapter.q): (None, w.heads * d), (adapter.attention, adapter.k): (None, w.kv_heads * d),
            (adapter.attention, adapter.v): (None, w.kv_heads * d), (adapter.attention, adapter.o): (w.heads * d, None),
            (adapter.mlp, adapter.gate): (None, w.intermediate), (adapter.mlp, adapter.up): (None, w.intermediate),
            (adapter.mlp, adapter.down): (w.intermediate, None),
        }
        for (part, name), (in_features, out_features) in shapes.items():
            if name is None:  # no gate
                continue
            old = adapter.linear(block, part, name)
            new = nn.Linear(in_features or old.in_features, out_features or old.out_features,
                            bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
            adapter.set_linear(block, part, name, new)
    apply_widths(model, widths, adapter)


def count_parameters(model: nn.Module, blocks_only: bool = False) -> int:
    if blocks_only:
        return sum(p.numel() for p in find_blocks(model)[1].parameters())
    return sum(p.numel() for p in model.parameters())
