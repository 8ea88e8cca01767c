"""Layer-wise sparsity allocation: how a target sparsity is spread over a model's layers.

Every allocator is a pure function `(layers, target, **options) -> {layer name: ratio}` whose
parameter-weighted mean equals the target. `resolve_allocation` reads the user's spec
(`uniform`, `global`, `er`, `er-plus`, `owl[:m=5,lambda=0.08]`, `dsa:FUNCTION` or a JSON file
from `kenprune search`) and returns an `Allocation` to prune with and record.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import KenpruneError, describe
from ..registry import Registry
from .dsa import dsa
from .er import er, er_plus
from .global_ import global_threshold
from .layers import Layer, blocks
from .mapping import check_target, fit_to_target, weighted_mean
from .owl import owl
from .uniform import uniform


@dataclass(frozen=True)
class Allocator:
    fn: Callable[..., dict[str, float]]
    needs_scores: bool  # True: needs a dense scoring pass over calibration data
    options: tuple[str, ...] = ()  # keyword options the spec may set (`owl:m=5,lambda=0.1`)


ALLOCATORS: Registry[Allocator] = Registry("allocation")
ALLOCATORS.add("uniform", Allocator(uniform, False), "the target ratio in every layer")
ALLOCATORS.add("global", Allocator(global_threshold, True), "one score threshold across all layers")
ALLOCATORS.add("er", Allocator(er, False), "Erdos-Renyi: density ~ (n_in + n_out) / (n_in * n_out)")
ALLOCATORS.add("er-plus", Allocator(er_plus, False), "ER with the last layer kept dense")
ALLOCATORS.add("owl", Allocator(owl, True, ("m", "lam")), "outlier-weighted (OWL, M=5, lambda=0.08)")
ALLOCATORS.add("dsa", Allocator(dsa, True, ("lam",)), "a DSA function, dsa:pre|reduction|transform|post")

LayerSource = Sequence[Layer] | Callable[[bool], Sequence[Layer]]


@dataclass
class Allocation:
    """Per-layer ratios and how they were chosen (recorded in the run's JSON)."""

    spec: str
    target: float
    ratios: dict[str, float]
    sizes: dict[str, int]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return weighted_mean(list(self.ratios.values()), [self.sizes[n] for n in self.ratios])

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "target": self.target, "weighted_mean": self.mean,
                "options": self.options, "ratios": self.ratios}


def resolve_allocation(spec: str, layers: LayerSource, target: float, *, lam: float = 0.08,
                       m: float = 5.0) -> Allocation:
    """The allocation a spec names, on `layers` (or on `layers(needs_scores)`, built lazily).

    spec: `uniform`, `global`, `er`, `er-plus`, `owl`, `owl:m=5,lambda=0.1`, `dsa:FUNCTION`,
    or a JSON file holding `allocation` (e.g. `best.json` of `kenprune search`) or `ratios`.
    """
    target = check_target(target)
    path = Path(spec)
    if spec.endswith(".json") or path.is_file():
        return _from_file(path, layers, target)
    name, _, arg = spec.partition(":")
    allocator = _allocator(name, spec)
    layer_list = list(layers(allocator.needs_scores) if callable(layers) else layers)
    if not layer_list:
        raise KenpruneError("the model has no prunable layers to allocate over")
    options: dict[str, Any] = {}
    if name == "dsa":
        if not arg:
            raise KenpruneError("dsa needs a function, e.g. --allocation 'dsa:abslog|var|atan,asin|noop'")
        options = {"function": arg, "lam": lam}
    else:
        options = {k: v for k, v in (("m", m), ("lam", lam)) if k in allocator.options}
        options.update(_parse_options(arg, allocator.options, spec))
    ratios = allocator.fn(layer_list, target, **options)
    if name == "dsa":
        from .dsa import parse
        options["function"] = str(parse(arg))
    return Allocation(spec, target, ratios, {layer.name: layer.numel for layer in layer_list}, options)


def check_allocation(spec: str) -> None:
    """Validate a spec without a model (before anything expensive): one-line errors."""
    if spec.endswith(".json") or Path(spec).is_file():
        data = read_allocation_file(spec)
        if "allocation" in data:
            check_allocation(data["allocation"])
        return
    name, _, arg = spec.partition(":")
    allocator = _allocator(name, spec)
    if name == "dsa":
        from .dsa import parse

        if not arg:
            raise KenpruneError("dsa needs a function, e.g. --allocation 'dsa:abslog|var|atan,asin|noop'")
        parse(arg)
    else:
        _parse_options(arg, allocator.options, spec)


def _allocator(name: str, spec: str):
    """The registered allocator `name`; an unknown one says a JSON file (from `kenprune search`) works too."""
    if name in ALLOCATORS:
        return ALLOCATORS.get(name)
    raise KenpruneError(f"unknown allocation {spec!r}; choose one of: {', '.join(ALLOCATORS.names())}, "
                        f"or give a JSON file written by `kenprune search` (e.g. search/best.json)")


def _parse_options(arg: str, allowed: tuple[str, ...], spec: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (s.strip() for s in arg.split(","))):
        key, eq, value = item.partition("=")
        key = {"lambda": "lam", "M": "m"}.get(key.strip(), key.strip())
        if not eq or key not in allowed:
            valid = ", ".join("lambda" if k == "lam" else k for k in allowed) or "none"
            raise KenpruneError(f"bad option {item!r} in allocation {spec!r}; options: {valid}")
        try:
            out[key] = float(value)
        except ValueError:
            raise KenpruneError(f"option {key} in allocation {spec!r} needs a number, got {value!r}") from None
    return out


def read_allocation_file(path: str | Path) -> dict[str, Any]:
    """The checked contents of an allocation file: {"allocation": spec, "lambda": x} or {"ratios": {...}}.

    A missing, truncated, non-JSON or malformed file raises KenpruneError, one line naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise KenpruneError(f"allocation file {path} does not exist")

    def refuse(name: str) -> Any:
        raise ValueError(f"non-finite number {name}")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise KenpruneError(f"cannot read allocation file {path}: {describe(exc, 120)}") from None
    bad = f"allocation file {path} is malformed"
    if isinstance(data, dict) and "allocation" in data:
        spec, lam = data["allocation"], data.get("lambda", 0.08)
        if not isinstance(spec, str) or spec.endswith(".json") or Path(spec).is_file():
            raise KenpruneError(f"{bad}: 'allocation' must name an allocator (e.g. 'dsa:...'), not {str(spec)[:60]!r}")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise KenpruneError(f"{bad}: 'lambda' must be a number, not {str(lam)[:40]!r}")
        return {"allocation": spec, "lambda": float(lam)}
    ratios = data.get("ratios") if isinstance(data, dict) else None
    if not isinstance(ratios, dict):
        raise KenpruneError(f"{path} holds neither 'allocation' nor 'ratios'; write it with `kenprune search`")
    for name, ratio in ratios.items():
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            raise KenpruneError(f"{bad}: ratio of {name[:60]!r} is {str(ratio)[:40]!r}, not a number in [0, 1]")
    return {"ratios": {name: float(ratio) for name, ratio in ratios.items()}}


def _from_file(path: Path, layers: LayerSource, target: float) -> Allocation:
    data = read_allocation_file(path)
    if "allocation" in data:
        result = resolve_allocation(data["allocation"], layers, target, lam=data["lambda"])
        result.spec, result.options["file"] = str(path), str(path)
        return result
    ratios = data["ratios"]
    layer_list = list(layers(False) if callable(layers) else layers)
    names = {layer.name for layer in layer_list}
    if set(ratios) != names:
        raise KenpruneError(f"{path} has ratios for {len(ratios)} layers that do not match the model's "
                            f"{len(names)} prunable layers")
    sizes = {layer.name: layer.numel for layer in layer_list}
    fitted = fit_to_target([ratios[n] for n in sizes], list(sizes.values()), target)
    return Allocation(str(path), target, dict(zip(sizes, map(float, fitted))), sizes, {"file": str(path)})


__all__ = ["ALLOCATORS", "Allocation", "Allocator", "Layer", "blocks", "check_allocation", "read_allocation_file",
           "resolve_allocation"]
