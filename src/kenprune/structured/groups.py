"""Coupled groups: the weight slices that must be removed together, found by the family adapter
(kenprune.models.families).

A group is a list of members (a linear layer, the axis its channels lie on, and which channels
belong to each unit). Pruning a unit (a query head, a key/value group or an MLP channel) removes
its channels from every member, so the block stays a valid, smaller dense block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import KenpruneError
from ..models.blocks import find_blocks
from ..models.families import FamilyAdapter, structured_adapter_for

ATTENTION = "attention"
MLP = "mlp"
ATTENTION_UNITS = ("auto", "query", "kv")


@dataclass(frozen=True)
class Member:
    """One linear layer of a group: channels along `axis` (0 = output rows, 1 = input columns)."""

    name: str
    linear: nn.Linear
    axis: int
    unit_channels: torch.Tensor  # [units, channels per unit] indices into that axis


@dataclass(frozen=True)
class Group:
    """Coupled structures of one kind in one block; `per_kv` > 1 when query heads share key/value heads."""

    block: int
    kind: str  # ATTENTION or MLP
    unit: str  # "query-head", "kv-group" or "channel"
    members: tuple[Member, ...]
    units: int
    per_kv: int = 1  # query mode: units are laid out [kv groups, per_kv]

    def keep_channels(self, member: Member, keep_units: torch.Tensor) -> torch.Tensor:
        return member.unit_channels[keep_units].reshape(-1)


def _unit_ranges(units: int, width: int) -> torch.Tensor:
    return torch.arange(units * width).view(units, width)


def resolve_attention_unit(unit: str, heads: int, kv_heads: int) -> str:
    if unit not in ATTENTION_UNITS:
        raise KenpruneError(f"unknown attention unit {unit!r}; choose one of: {', '.join(ATTENTION_UNITS)}")
    if unit == "auto":
        return "kv" if heads == kv_heads else "query"
    if unit == "query" and heads == kv_heads:
        raise KenpruneError("every key/value head has a single query head, so removing query heads alone "
                            "would break the key/value grouping; use --attention-unit kv")
    return unit


def block_groups(model: nn.Module, attention_unit: str = "auto",
                 adapter: FamilyAdapter | None = None) -> list[Group]:
    """The attention and MLP groups of every block, in block order."""
    adapter = adapter or structured_adapter_for(model)
    d = adapter.head_dim(model.config)
    groups: list[Group] = []
    for i, block in enumerate(find_blocks(model)[1]):
        lin = lambda part, name: adapter.linear(block, part, name)  # noqa: E731
        q, k, v, o = (lin(adapter.attention, n) for n in (adapter.q, adapter.k, adapter.v, adapter.o))
        heads, kv_heads = q.out_features // d, k.out_features // d
        unit = resolve_attention_unit(attention_unit, heads, kv_heads)
        per_kv = heads // kv_heads
        if unit == "query":
            head_channels = _unit_ranges(heads, d)
            members = (Member(adapter.q, q, 0, head_channels), Member(adapter.o, o, 1, head_channels))
            groups.append(Group(i, ATTENTION, "query-head", members, heads, per_kv))
        else:
            q_channels = _unit_ranges(kv_heads, per_kv * d)
            kv_channels = _unit_ranges(kv_heads, d)
            members = (Member(adapter.q, q, 0, q_channels), Member(adapter.k, k, 0, kv_channels),
                       Member(adapter.v, v, 0, kv_channels), Member(adapter.o, o, 1, q_channels))
            groups.append(Group(i, ATTENTION, "kv-group", members, kv_heads, 1))
        up, down = lin(adapter.mlp, adapter.up), lin(adapter.mlp, adapter.down)
        channels = _unit_ranges(up.out_features, 1)
        members = (Member(adapter.up, up, 0, channels), Member(adapter.down, down, 1, channels))
        if adapter.gate:  # gated MLP: the gate's rows go with up's (listed first, as the block computes it)
            members = (Member(adapter.gate, lin(adapter.mlp, adapter.gate), 0, channels), *members)
        groups.append(Group(i, MLP, "channel", members, up.out_features))
    return groups
