"""Coupled groups: the weight slices that must be removed together, found by a per-family adapter.

A group is a list of members (a linear layer, the axis its channels lie on, and which channels
belong to each unit). Pruning a unit (a query head, a key/value group or an MLP channel) removes
its channels from every member, so the block stays a valid, smaller dense block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import KenpruneError
from ..registry import Registry

ATTENTION = "attention"
MLP = "mlp"
ATTENTION_UNITS = ("auto", "query", "kv")


@dataclass(frozen=True)
class FamilyAdapter:
    """Where a family keeps its attention and MLP projections and how its config names widths."""

    attention: str = "self_attn"
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    o: str = "o_proj"
    mlp: str = "mlp"
    gate: str = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    heads_key: str = "num_attention_heads"
    kv_heads_key: str = "num_key_value_heads"
    intermediate_key: str = "intermediate_size"
    layers_key: str = "num_hidden_layers"

    def head_dim(self, config: Any) -> int:
        return getattr(config, "head_dim", None) or config.hidden_size // getattr(config, self.heads_key)

    def linear(self, block: nn.Module, part: str, name: str) -> nn.Linear:
        return getattr(getattr(block, part), name)

    def set_heads(self, block: nn.Module, heads: int, kv_heads: int) -> None:
        """Tell the attention module its new head counts (HF reads these at forward time)."""
        attention = getattr(block, self.attention)
        attention.num_key_value_groups = heads // kv_heads
        for attr, value in (("num_heads", heads), ("num_key_value_heads", kv_heads)):
            if hasattr(attention, attr):
                setattr(attention, attr, value)


LLAMA_LIKE = FamilyAdapter()

# model_type -> adapter. Llama, Mistral and Qwen2 share one shape (Qwen2 adds q/k/v biases,
# which removal slices too). A new family registers its own FamilyAdapter here.
ADAPTERS: Registry[FamilyAdapter] = Registry("model family")
for _family in ("llama", "mistral", "qwen2"):
    ADAPTERS.add(_family, LLAMA_LIKE, "Llama-like: q/k/v/o_proj + gate/up/down_proj")


def adapter_for(model: nn.Module) -> FamilyAdapter:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        raise KenpruneError(f"structured pruning has no adapter for model family {model_type!r}; "
                            f"supported families: {', '.join(ADAPTERS.names())}")
    return ADAPTERS.get(model_type)


def find_blocks(model: nn.Module, adapter: FamilyAdapter | None = None) -> nn.ModuleList:
    """The decoder blocks: the ModuleList with one entry per hidden layer (no hard-coded path)."""
    adapter = adapter or adapter_for(model)
    n_layers = getattr(model.config, adapter.layers_key)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and hasattr(module[0], adapter.attention):
            return module
    raise KenpruneError(f"could not find {n_layers} decoder blocks in {type(model).__name__}")


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
    adapter = adapter or adapter_for(model)
    d = adapter.head_dim(model.config)
    groups: list[Group] = []
    for i, block in enumerate(find_blocks(model, adapter)):
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
        gate, up, down = (lin(adapter.mlp, n) for n in (adapter.gate, adapter.up, adapter.down))
        channels = _unit_ranges(gate.out_features, 1)
        members = (Member(adapter.gate, gate, 0, channels), Member(adapter.up, up, 0, channels),
                   Member(adapter.down, down, 1, channels))
        groups.append(Group(i, MLP, "channel", members, gate.out_features))
    return groups
