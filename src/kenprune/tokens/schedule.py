"""How many tokens remain after each pruning layer: a schedule of cumulative keep ratios.

A schedule maps a layer index to the share of each sequence's input tokens still present after that layer's
pruning step (between its attention and its MLP). It is given as
- one keep ratio rho (`0.6`): pruning in layers 1 .. L//2 (layer 0 stays dense), the same fraction at each, so
  that rho of the tokens remain from the middle layer to the last (front-loaded, as DynamicViT and EViT place
  their pruning layers, because late pruning saves little);
- ratios for layers 1, 2, ... (`0.9,0.75,0.6`), or `LAYER:RATIO` pairs (`1:0.9,3:0.6`), or a mapping.
Ratios are cumulative (relative to the input length), in (0, 1] and never increase with depth.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

from ..errors import KenpruneError

Schedule = Union[float, str, Sequence[float], Mapping[int, float]]


def _ratio(value: object, what: str) -> float:
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise KenpruneError(f"{what} must be a number in (0, 1], got {value!r}") from None
    if not 0 < ratio <= 1:
        raise KenpruneError(f"{what} must be in (0, 1], got {value!r}")
    return ratio


def single_ratio_layers(layers: int) -> list[int]:
    """The pruning layers of a single keep ratio: 1 .. L//2 (layer 0 for a one-layer model)."""
    if layers <= 1:
        return [0]
    return list(range(1, max(2, layers // 2 + 1)))


def parse(text: str) -> Schedule:
    """`0.6`, `0.9,0.75,0.6` or `1:0.9,3:0.6` as a schedule value (one-line error otherwise)."""
    text = text.strip()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise KenpruneError("empty --schedule; give a keep ratio, ratios per layer (0.9,0.75,0.6) or "
                            "LAYER:RATIO pairs (1:0.9,3:0.6)")
    if all(":" in p for p in parts):
        out: dict[int, float] = {}
        for p in parts:
            layer, _, ratio = p.partition(":")
            try:
                index = int(layer)
            except ValueError:
                raise KenpruneError(f"--schedule entry {p!r}: the layer must be an integer") from None
            if index in out:
                raise KenpruneError(f"--schedule names layer {index} twice")
            out[index] = _ratio(ratio, f"--schedule ratio of layer {index}")
        return out
    if any(":" in p for p in parts):
        raise KenpruneError(f"--schedule {text!r} mixes LAYER:RATIO pairs and plain ratios; use one form")
    ratios = [_ratio(p, "--schedule ratio") for p in parts]
    return ratios[0] if len(ratios) == 1 else ratios


def resolve(schedule: Schedule, layers: int) -> dict[int, float]:
    """{layer: cumulative keep ratio} for a model with `layers` layers; ratios of 1 (no pruning) are left out.

    One-line errors: a ratio outside (0, 1], a layer the model lacks, a schedule longer than the model,
    ratios that increase with depth."""
    if isinstance(schedule, str):
        schedule = parse(schedule)
    if isinstance(schedule, Mapping):
        pairs = {int(k): _ratio(v, f"keep ratio of layer {k}") for k, v in schedule.items()}
    elif isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        rho = _ratio(schedule, "keep ratio (--keep)")
        where = single_ratio_layers(layers)
        pairs = {layer: rho ** ((i + 1) / len(where)) for i, layer in enumerate(where)}
        pairs[where[-1]] = rho  # exact at the last pruning layer
    elif isinstance(schedule, Sequence):
        ratios = [_ratio(v, "keep ratio") for v in schedule]
        if len(ratios) > max(1, layers - 1):
            raise KenpruneError(f"the schedule has {len(ratios)} ratios for layers 1..{len(ratios)}, but the model "
                                f"has {layers} layers (at most {max(1, layers - 1)} ratios)")
        pairs = {i + 1 if layers > 1 else i: r for i, r in enumerate(ratios)}
    else:
        raise KenpruneError(f"a schedule is a keep ratio, a list of ratios or a {{layer: ratio}} mapping, "
                            f"not {type(schedule).__name__}")
    for layer in pairs:
        if not 0 <= layer < layers:
            raise KenpruneError(f"the schedule names layer {layer}, but the model has {layers} layers "
                                f"(0-{layers - 1})")
    ordered = dict(sorted(pairs.items()))
    previous = 1.0
    for layer, ratio in ordered.items():
        if ratio > previous + 1e-12:
            raise KenpruneError(f"keep ratios are cumulative and cannot grow with depth: layer {layer} keeps "
                                f"{ratio:g} after {previous:g}")
        previous = ratio
    return {k: v for k, v in ordered.items() if v < 1.0}


def describe(resolved: Mapping[int, float]) -> str:
    """'1:0.843, 2:0.711, 3:0.6' (or 'none' when nothing is pruned)."""
    return ", ".join(f"{k}:{v:.3g}" for k, v in resolved.items()) or "none"
