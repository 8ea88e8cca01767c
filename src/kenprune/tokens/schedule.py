"""How many tokens remain after each pruning layer: a schedule of cumulative keep ratios.

A schedule maps a layer index to the share of each sequence's input tokens still present after that layer's
pruning step (between its attention and its MLP). It is given as
- one keep ratio rho (`0.6`): pruning in layers 1 .. L//2 (layer 0 stays dense), the same fraction at each, so
  that rho of the tokens remain from the middle layer to the last (front-loaded, as DynamicViT and EViT place
  their pruning layers, because late pruning saves little);
- ratios for layers 1, 2, ... (`0.9,0.75,0.6`), or `LAYER:RATIO` pairs (`1:0.9,3:0.6`), or a mapping;
- a FLOPs target (`flops:0.7`, `FlopsTarget(0.7)`): the keep ratio rho of the single-ratio shape whose encoder
  FLOPs are that share of the dense encoder's at the input's length (`flops_schedule`, resolved per input length
  by the patch).
Ratios are cumulative (relative to the input length), in (0, 1] and never increase with depth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from ..errors import KenpruneError
from .functional import layer_flops


@dataclass(frozen=True)
class FlopsTarget:
    """A FLOPs target: the pruned encoder costs `ratio` of the dense encoder's FLOPs at each input's length."""

    ratio: float

    def __post_init__(self) -> None:
        try:
            ratio = float(self.ratio)
        except (TypeError, ValueError):
            raise KenpruneError(f"a FLOPs target must be a number in (0, 1], got {self.ratio!r}") from None
        if isinstance(self.ratio, bool) or not 0 < ratio <= 1:
            raise KenpruneError(f"a FLOPs target is a share of the dense FLOPs in (0, 1], got {self.ratio!r}")
        object.__setattr__(self, "ratio", ratio)

    def __str__(self) -> str:
        return f"flops:{self.ratio:g}"


Schedule = Union[float, str, Sequence[float], Mapping[int, float], FlopsTarget]


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


def single_ratio_shape(rho: float, layers: int) -> dict[int, float]:
    """The schedule of one keep ratio rho: the same fraction pruned at each of layers 1 .. L//2, so that
    layer i of k keeps rho ** (i / k) and the last exactly rho (rho = 0 keeps nothing but protected tokens)."""
    where = single_ratio_layers(layers)
    pairs = {layer: rho ** ((i + 1) / len(where)) for i, layer in enumerate(where)}
    pairs[where[-1]] = rho  # exact at the last pruning layer
    return pairs


def parse(text: str) -> Schedule:
    """`0.6`, `0.9,0.75,0.6`, `1:0.9,3:0.6` or `flops:0.7` as a schedule value (one-line error otherwise)."""
    text = text.strip()
    if text.lower().startswith("flops:"):
        return FlopsTarget(text[len("flops:"):].strip())
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
    if isinstance(schedule, FlopsTarget):
        raise KenpruneError(f"{schedule} depends on the input length and the model's widths: resolve it with "
                            f"flops_schedule(target, layers, length, hidden, intermediate, protected)")
    if isinstance(schedule, Mapping):
        pairs = {int(k): _ratio(v, f"keep ratio of layer {k}") for k, v in schedule.items()}
    elif isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        pairs = single_ratio_shape(_ratio(schedule, "keep ratio (--keep)"), layers)
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


# ----------------------------------------------------------------------------- FLOPs targets

def schedule_flops(schedule: Mapping[int, float], layers: int, length: int, hidden: int, intermediate: int,
                   protected: int = 0) -> float:
    """Encoder FLOPs of `schedule` at `length` input tokens as a share of dense, under `layer_flops`'s model.

    The FLOPs model (the one `tokens.measure.flops` applies to real token counts): an encoder layer whose
    attention sees n_in tokens and whose MLP n_out costs 2 (4 n_in h^2 + 2 n_in^2 h + 2 n_out h m) for hidden
    width h and MLP width m, i.e. the q, k, v, o projections, the attention scores and weighted sum, and the two
    MLP matrices; embeddings, pooler, norms, softmax and the pruning's own work are left out. Layer l keeps
    n_out = min(n_in, max(ratio_l * length, protected)) tokens (continuous: the patch rounds up, to at most one
    token more per layer) and hands them to layer l+1 as its n_in; a layer outside the schedule prunes nothing."""
    dense = layers * layer_flops(length, length, hidden, intermediate)
    n_in, total = float(length), 0.0
    for layer in range(layers):
        n_out = min(n_in, max(schedule[layer] * length, float(protected))) if layer in schedule else n_in
        total += layer_flops(n_in, n_out, hidden, intermediate)
        n_in = n_out
    return total / dense


def lowest_flops_ratio(layers: int, length: int, hidden: int, intermediate: int, protected: int) -> float:
    """The fewest FLOPs (share of dense) the single-ratio shape reaches at `length`: every pruning layer keeps
    only the `protected` tokens."""
    return schedule_flops(single_ratio_shape(0.0, layers), layers, length, hidden, intermediate, protected)


def flops_schedule(target: float, layers: int, length: int, hidden: int, intermediate: int, protected: int,
                   clamp: bool = False, tolerance: float = 1e-10) -> tuple[float, dict[int, float]]:
    """(rho, schedule): the keep ratio rho of the single-ratio shape (`single_ratio_shape`) whose FLOPs at
    `length` tokens are `target` of dense under `schedule_flops`'s model, found by bisection (the FLOPs grow
    monotonically with rho), and its schedule without the ratios of 1.

    A target in (0, 1] below `lowest_flops_ratio` (the protected tokens always stay) is a one-line error, or,
    with clamp=True, gives rho = 0 and the schedule that keeps only the protected tokens."""
    target = FlopsTarget(target).ratio
    low = lowest_flops_ratio(layers, length, hidden, intermediate, protected)
    if target >= 1.0 or low >= 1.0:
        if target < low - tolerance and not clamp:
            raise _unreachable(target, length, protected, low)
        return 1.0, {}
    if target < low - tolerance:
        if not clamp:
            raise _unreachable(target, length, protected, low)
        floor = min(1.0, protected / length)
        return 0.0, {k: floor for k in single_ratio_layers(layers) if floor < 1.0}
    lo, hi = 0.0, 1.0
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        if schedule_flops(single_ratio_shape(mid, layers), layers, length, hidden, intermediate, protected) < target:
            lo = mid
        else:
            hi = mid
    return hi, {k: v for k, v in single_ratio_shape(hi, layers).items() if v < 1.0}


def reachable_flops_target(target: float, layers: int, longest: int, hidden: int, intermediate: int,
                           protected: int) -> float:
    """`target` when some input length up to `longest` reaches it, else a one-line error naming the lowest
    share any length reaches (not always at the longest input: in a narrow model the dense layers' attention,
    quadratic in the length, outweighs what pruning saves at long inputs)."""
    target = FlopsTarget(target).ratio
    low, length = min((lowest_flops_ratio(layers, n, hidden, intermediate, protected), n)
                      for n in range(protected + 1, max(longest, protected + 1) + 1))
    if target < low - 1e-10:
        raise KenpruneError(f"FLOPs target {target:g} is out of reach at every input length up to {longest} tokens: "
                            f"the {protected} special token(s) ([CLS], [SEP]) always stay, so the pruned encoder "
                            f"costs at least {low:.4f} of dense (at {length} tokens); ask for {low:.4f} or more")
    return target


def _unreachable(target: float, length: int, protected: int, low: float) -> KenpruneError:
    return KenpruneError(f"FLOPs target {target:g} is out of reach at {length} tokens: the {protected} special "
                         f"token(s) ([CLS], [SEP]) always stay, so the pruned encoder costs at least {low:.4f} of "
                         f"dense; ask for {low:.4f} or more")
