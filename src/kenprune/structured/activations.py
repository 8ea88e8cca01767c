"""Activation spreads for Beta-Rank: how much each unit's output varies over the calibration data,
relative to how much its input varies, from forward hooks over calibration windows (no gradients).

For a group, the unit's input is the block input its first row-sliced member reads (q_proj or
gate_proj input: the normed hidden states) and its output is what its column-sliced member reads
(o_proj input: the head's attention output; down_proj input: the channel's activation). As in
Beta-Rank's `std_filters`, spreads are taken over the batch (windows) at each output position and
divided by the spread of the input at that position; positions are then averaged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import KenpruneError
from .groups import Group
from .importance import forward


@dataclass
class _Moments:
    """Running sums over windows, per position: of the output channels [P, C] and of the input [P]."""

    out_sum: torch.Tensor | None = None
    out_square: torch.Tensor | None = None
    in_sum: torch.Tensor | None = None
    in_square: torch.Tensor | None = None
    in_features: int = 0

    def add_input(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        s, q = x.sum(-1), x.square().sum(-1)
        self.in_features = x.size(-1)
        self.in_sum = s if self.in_sum is None else self.in_sum + s
        self.in_square = q if self.in_square is None else self.in_square + q

    def add_output(self, a: torch.Tensor) -> None:
        a = a.detach().double()
        self.out_sum = a if self.out_sum is None else self.out_sum + a
        self.out_square = a.square() if self.out_square is None else self.out_square + a.square()


def std_from_moments(total: torch.Tensor, square: torch.Tensor, n: int) -> torch.Tensor:
    """Population standard deviation from a sum and a sum of squares over n values."""
    mean = total / n
    return (square / n - mean.square()).clamp_min(0).sqrt()


def spread_ratio(out_std: torch.Tensor, in_std: torch.Tensor) -> torch.Tensor:
    """Per output channel, the mean over positions of std(out[pos, c]) / std(in[pos]); positions whose input
    does not vary are skipped (as Beta-Rank skips a NaN ratio)."""
    valid = in_std > 0
    if not valid.any():
        return torch.zeros(out_std.size(-1), dtype=out_std.dtype)
    return (out_std[valid] / in_std[valid].unsqueeze(-1)).mean(0)


def _io_members(group: Group) -> tuple[nn.Linear, nn.Linear, torch.Tensor]:
    reader = next(m for m in group.members if m.axis == 0)
    writer = next(m for m in group.members if m.axis == 1)
    return reader.linear, writer.linear, writer.unit_channels


def _rows_into(add):
    """A pre-hook feeding each row of the module's input batch to `add` (it changes nothing)."""
    def hook(module, args):
        for row in args[0]:
            add(row)
    return hook


def collect_spreads(model: nn.Module, groups: list[Group], windows: torch.Tensor | list[dict[str, torch.Tensor]], *,
                    progress: bool = True) -> dict[tuple[int, str], torch.Tensor]:
    """Each unit's activation spread (mean of its output channels' spread ratios), keyed by (block, kind).

    `windows`: token windows [n, seqlen], or batches for a classifier (importance.forward), padded to one
    length so that positions line up (padding positions count as positions)."""
    n = window_count(windows)
    check_spread_windows(n)
    return spreads_from_moments(groups, collect_moments(model, groups, windows, progress=progress), n)


def window_count(windows: torch.Tensor | list[dict[str, torch.Tensor]]) -> int:
    """How many windows (or labelled rows) the spreads are taken over."""
    return len(windows) if isinstance(windows, torch.Tensor) else sum(len(b["input_ids"]) for b in windows)


def check_spread_windows(n: int) -> None:
    if n < 2:
        raise KenpruneError("beta-rank needs at least 2 calibration windows (spreads are taken across windows); "
                            "raise --nsamples")


def collect_moments(model: nn.Module, groups: list[Group], windows: torch.Tensor | list[dict[str, torch.Tensor]], *,
                    progress: bool = True) -> dict[tuple[int, str], _Moments]:
    """Each group's running sums over the windows (per position), keyed by (block, kind): what a federated
    client sends (kenprune.federated.structured); `spreads_from_moments` turns them into spreads."""
    moments = {(g.block, g.kind): _Moments() for g in groups}
    handles = []
    for group in groups:
        reader, writer, _ = _io_members(group)
        m = moments[(group.block, group.kind)]
        handles.append(reader.register_forward_pre_hook(_rows_into(m.add_input)))
        handles.append(writer.register_forward_pre_hook(_rows_into(m.add_output)))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for window in tqdm(windows, desc="activations", unit="win", disable=not progress, leave=False):
                forward(model, window, device, loss=False)
    finally:
        for h in handles:
            h.remove()
    return moments


def spreads_from_moments(groups: list[Group], moments: dict[tuple[int, str], _Moments],
                         n: int) -> dict[tuple[int, str], torch.Tensor]:
    """Each unit's spread from its group's sums over `n` windows."""
    spreads = {}
    for group in groups:
        m = moments[(group.block, group.kind)]
        _, _, unit_channels = _io_members(group)
        in_std = std_from_moments(m.in_sum, m.in_square, n * m.in_features)
        ratio = spread_ratio(std_from_moments(m.out_sum, m.out_square, n), in_std).cpu()
        spreads[(group.block, group.kind)] = ratio[unit_channels].mean(-1)
    return spreads
