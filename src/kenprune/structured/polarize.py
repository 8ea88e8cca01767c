"""Polarization-gated pruning: learn one gate per attention head and MLP channel while the model trains,
push the gates to 0 or 1 toward the target ratio, then remove the units whose gates closed.

After "Learning a consensus sub-network with polarization regularization and one pass training" (Zhi et
al., arXiv 2302.10798): gates on channels, trained once with the network under a regularizer that
polarizes them toward a user-defined sparsity, so the sub-network is static (no gate at inference).
The polarizer is Zhuang et al.'s (NeurIPS 2020) "-|g - mean(g)|" term, normalized here so that, per
group with keep fraction k (= 1 - ratio),

    R(g) = |mean(g) - k| + (2 mean(g) (1 - mean(g)) - mean|g - mean(g)|)

is >= 0 and is 0 exactly when every gate is 0 or 1 and a fraction k of them is 1 (for g in [0, 1],
mean|g - mean| <= 2 mean (1 - mean), with equality only for 0/1 gates). Gates are g = sigmoid(theta),
multiplied into the input columns of o_proj (per head) and down_proj (per channel). At the end every
gate value is folded into those columns, the plan keeps the units with the largest gates (its own
rounding and per-key/value-group rules), and the rest are removed physically (removal.remove_units).
The paper's own gate form (binary, straight-through) and loss constants are not public; this is our
reading of its abstract, stated as such.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .groups import Group


def polarization_penalty(gates: torch.Tensor, keep: float) -> torch.Tensor:
    """R(g) above: 0 exactly for 0/1 gates with a fraction `keep` of ones."""
    mean = gates.mean()
    return (mean - keep).abs() + 2 * mean * (1 - mean) - (gates - mean).abs().mean()


def _writer(group: Group):
    return next(m for m in group.members if m.axis == 1)


def channel_gates(group: Group, gates: torch.Tensor) -> torch.Tensor:
    """A unit's gate on each input column of its column-sliced member (o_proj / down_proj)."""
    writer = _writer(group)
    channels = writer.unit_channels
    per_channel = gates.repeat_interleave(channels.size(1))
    return torch.zeros(writer.linear.in_features, dtype=gates.dtype, device=gates.device).scatter(
        0, channels.reshape(-1).to(gates.device), per_channel)


def _module_around(model: nn.Module, linear: nn.Linear) -> nn.Module:
    """The module that calls `linear` in the (possibly LoRA-wrapped) model: its wrapper, else itself."""
    for module in model.modules():
        get_base = getattr(module, "get_base_layer", None)
        if module is not linear and get_base is not None and get_base() is linear:
            return module
    return linear


class GateSet:
    """One learnable gate per unit of each group, attached as input hooks on o_proj / down_proj."""

    def __init__(self, groups: list[Group], keep: float, *, weight: float = 1.0, lr: float = 0.05,
                 init: float = 2.0) -> None:
        self.groups, self.keep, self.weight, self.lr = groups, keep, weight, lr
        self.logits = [nn.Parameter(torch.full((g.units,), float(init))) for g in groups]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.logits)

    def values(self) -> list[torch.Tensor]:
        return [torch.sigmoid(t) for t in self.logits]

    def penalty(self) -> torch.Tensor:
        """The weighted sum over groups of the polarization penalty toward `keep`.

        A sum, not a mean: each gate then feels a pull of about weight / (units in its group), comparable
        with its language-modelling gradient on smollm2-135m (median |dL/dtheta| 6e-4 for heads, 5e-5 for
        MLP channels, measured on 2 windows of 256 tokens of lee)."""
        return self.weight * torch.stack([polarization_penalty(g, self.keep) for g in self.values()]).sum()

    def attach(self, model: nn.Module, fixed: list[torch.Tensor] | None = None) -> Callable[[], None]:
        """Gate each group's column-sliced member in `model`; `fixed`: constant gates instead of the learned ones.
        Returns the function that detaches them."""
        handles = []
        for i, group in enumerate(self.groups):
            def hook(module, args, i=i, group=group):
                gates = fixed[i] if fixed is not None else torch.sigmoid(self.logits[i])
                x = args[0]
                return (x * channel_gates(group, gates.to(x.device)).to(x.dtype), *args[1:])
            handles.append(_module_around(model, _writer(group).linear).register_forward_pre_hook(hook))
        return lambda: [h.remove() for h in handles]

    @torch.no_grad()
    def fold(self) -> None:
        """Multiply every gate into its input columns (the model then computes what the gated model did)."""
        for group, gates in zip(self.groups, self.values()):
            writer = _writer(group).linear
            writer.weight.mul_(channel_gates(group, gates.detach()).to(writer.weight.dtype))

    def summary(self, keep: list[torch.Tensor]) -> dict[str, float]:
        """How polarized the gates ended: the largest removed gate and the smallest kept one."""
        removed, kept = [], []
        for gates, k in zip(self.values(), keep):
            mask = torch.zeros(gates.numel(), dtype=torch.bool)
            mask[k] = True
            kept += gates[mask].tolist()
            removed += gates[~mask].tolist()
        return {"removed_gate_max": max(removed, default=0.0), "kept_gate_min": min(kept, default=1.0),
                "gates_binary_fraction": sum(v < 0.05 or v > 0.95 for v in removed + kept) / max(1, len(removed + kept))}
