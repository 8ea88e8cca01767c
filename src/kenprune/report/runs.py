"""Read a run folder's JSON into what a report needs, with one small adapter per run kind.

The commands that write run folders (prune, ken, search, structured) own their JSON; these adapters
only extract: a summary table, the evaluation protocol, per-layer values, search histories, and one
(sparsity, quality) point for cross-run curves. They accept the few spellings those commands use and
fail with one clear line when something the report needs is missing or malformed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import KenpruneError
from ..registry import Registry

# Files a run folder's result may be in, most specific first; otherwise the one JSON that names a method.
RESULT_FILES = ("kenprune-report.json", "report.json", "summary.json", "ken.json", "search.json", "result.json")
NOT_RESULTS = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "kenprune.json", "model.safetensors.index.json"}
_MISSING = object()


@dataclass
class LayerValues:
    """One value per layer (or tensor): what a bar chart shows."""
    labels: list[str]
    values: list[float]
    quantity: str  # "sparsity" or "kept fraction"
    target: float | None = None


@dataclass
class Run:
    """What the report shows about one run folder, independent of the command that wrote it."""
    path: Path
    source: Path  # the JSON file read
    kind: str
    model: str
    method: str
    summary: dict[str, str]
    protocol: dict[str, Any]
    layers: LayerValues | None = None
    histories: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    sparsity: float | None = None
    quality: tuple[str, float | None, float | None] | None = None  # (metric, before, after)
    subnetwork: Path | None = None  # KEN: the subnetwork file, for the mask views
    optimized: Path | None = None  # KEN: the optimized model folder, if saved
    pretrained: str | None = None  # KEN: the base model the subnetwork applies to
    raw: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # the run folder's name, or the result file's stem when a JSON file was given

    @property
    def series(self) -> str:
        """The line this run belongs to on a quality-vs-sparsity plot: method plus allocation, if any."""
        alloc = _pick(self.raw, "allocation.spec", "allocation.name", "allocation", "allocator", default=None)
        alloc = alloc if isinstance(alloc, str) else None
        return f"{self.method} + {alloc}" if alloc and alloc != "uniform" else self.method


class RunFormatError(KenpruneError):
    """A run folder whose JSON lacks something the report needs."""


# ----------------------------------------------------------------------------- tolerant lookups

def _pick(data: Any, *paths: str, default: Any = _MISSING) -> Any:
    """The first dotted path present (and not null) in nested dicts; `default` or _MISSING otherwise."""
    for path in paths:
        node = data
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return default


def _number(value: Any, what: str, source: Path) -> float:
    if isinstance(value, dict):  # a nested result, e.g. {"perplexity": 29.6, ...}
        value = _pick(value, "perplexity", "accuracy", "value", "mean", default=value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunFormatError(f"{source}: {what} should be a number, found {json.dumps(value)[:60]}; "
                             f"re-run the command that wrote it")
    return float(value)


def _require(data: dict, source: Path, what: str, *paths: str) -> Any:
    value = _pick(data, *paths)
    if value is _MISSING:
        raise RunFormatError(f"{source} has no {what} (looked for {', '.join(paths)}); "
                             f"it is not a complete kenprune result: re-run the command that wrote it")
    return value


def _bytes_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _seconds_text(value: Any) -> str:
    if isinstance(value, dict):
        parts = {k: float(v) for k, v in value.items() if isinstance(v, (int, float))}
        total = sum(parts.values())
        return f"{total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()) + ")"
    return f"{float(value):.1f} s"


def format_number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


# ----------------------------------------------------------------------------- shared extractors

def _per_layer(data: dict, source: Path, quantity: str, *paths: str) -> LayerValues | None:
    """Per-layer values as a dict name -> value (or -> {value}), a list of numbers, or a list of records."""
    raw = _pick(data, *paths, default=None)
    if raw is None:
        return None
    keys = ("sparsity", "kept_fraction", "kept", "ratio", "fraction", "value")
    labels, values = [], []
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else None
    if items is None:
        raise RunFormatError(f"{source}: per-layer values ({'/'.join(paths)}) should be a list or an object")
    for key, item in items:
        if isinstance(item, dict):
            label = _pick(item, "name", "layer", "tensor", "block", default=key)
            item = _pick(item, *keys, default=None)
            if item is None:
                raise RunFormatError(f"{source}: a per-layer record has none of {', '.join(keys)}")
        else:
            label = key
        labels.append(str(label))
        values.append(_number(item, f"the per-layer value of {label}", source))
    if not values:
        raise RunFormatError(f"{source}: per-layer values ({'/'.join(paths)}) are empty")
    return LayerValues(labels, values, quantity)


def _quality(data: dict, source: Path) -> tuple[str, float | None, float | None] | None:
    """(metric, before, after) from the spellings the commands use (before/after, dense/pruned)."""
    for metric in ("perplexity", "accuracy"):
        before = _pick(data, f"{metric}.before", f"{metric}.dense", f"{metric}_before", f"dense_{metric}",
                       f"before.{metric}", f"dense.{metric}", f"eval.before.{metric}", default=None)
        after = _pick(data, f"{metric}.after", f"{metric}.pruned", f"{metric}.optimized", f"{metric}_after",
                      f"pruned_{metric}", f"after.{metric}", f"pruned.{metric}", f"eval.after.{metric}",
                      default=None)
        if before is not None or after is not None:
            return (metric, None if before is None else _number(before, f"{metric} before", source),
                    None if after is None else _number(after, f"{metric} after", source))
    metric = _pick(data, "eval.metric", default=None)
    if isinstance(metric, str):  # {"eval": {"metric": "accuracy", "value": 0.9, ...}}: after only
        return metric, None, _number(_require(data, source, "eval value", "eval.value"), "eval value", source)
    return None


def _protocol(data: dict) -> dict[str, Any]:
    proto = _pick(data, "protocol", "evaluation", "eval.protocol", "perplexity.protocol", "accuracy.protocol",
                  "after.protocol", "before.protocol", "fitness_protocol", default={})
    proto = dict(proto) if isinstance(proto, dict) else {"protocol": proto}
    for metric in ("perplexity", "accuracy"):  # the commands may inline the protocol beside the numbers
        block = data.get(metric)
        if isinstance(block, dict):
            proto.update({k: v for k, v in block.items()
                          if not isinstance(v, (dict, float)) or k in ("seqlen", "max_windows")})
    block = data.get("eval")
    if isinstance(block, dict) and not proto:
        proto.update({k: v for k, v in block.items() if k not in ("value", "correct", "total")})
    calib = _pick(data, "calibration", "calib", default=None)
    if calib is not None:
        proto["calibration"] = calib
    return proto


def _common_summary(data: dict, source: Path, run: Run) -> None:
    """Rows every run kind shares: quality, sizes, time, memory, versions."""
    s = run.summary
    if run.quality:
        metric, before, after = run.quality
        for when, value in (("before", before), ("after", after)):
            if value is not None:
                s[f"{metric} {when}"] = format_number(value)
        if before and after is not None:
            s[f"{metric} change"] = f"{(after - before) / before:+.1%}"
    sizes = _pick(data, "sizes", "files", "file_bytes", "bytes", "size_bytes", default=None)
    if isinstance(sizes, dict):
        for key, n in sizes.items():
            if isinstance(n, bool) or not isinstance(n, (int, float)):
                continue
            label = key.removesuffix("_bytes").replace("_", " ")
            is_ratio = any(word in key for word in ("ratio", "_vs_", "fraction"))
            s[label if is_ratio else f"size: {label}"] = f"{n:.3f}" if is_ratio else _bytes_text(n)
    elif isinstance(sizes, (int, float)):
        s["size on disk"] = _bytes_text(sizes)
    seconds = _pick(data, "seconds", "time_s", "timings", "total_seconds", default=None)
    if isinstance(seconds, (dict, int, float)):
        s["time"] = _seconds_text(seconds)
    peak = _pick(data, "peak_rss_bytes", "peak_memory_bytes", "memory.peak_rss_bytes", "peak_memory", default=None)
    if isinstance(peak, (int, float)):
        s["peak memory (RSS)"] = _bytes_text(peak)
    versions = _pick(data, "versions", default=None)
    if isinstance(versions, dict):
        s["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())


def _base(data: dict, source: Path, path: Path, kind: str, default_method: str | None = None,
          model_paths: tuple[str, ...] = ("model", "base_model", "model_name", "pretrained", "base")) -> Run:
    model = _pick(data, *model_paths, default=None)
    if isinstance(model, dict):
        model = _pick(model, "name", "source", default=None)
    method = _pick(data, "method", "targets.method", default=default_method)
    for what, value in (("model name", model), ("method", method)):
        if not isinstance(value, str):
            raise RunFormatError(f"{source} has no {what} (a string); it is not a complete kenprune result: "
                                 f"re-run the command that wrote it")
    run = Run(path=path, source=source, kind=kind, model=str(model), method=str(method), summary={},
              protocol=_protocol(data), raw=data)
    run.summary["model"] = run.model
    run.summary["method"] = run.method
    return run


# ----------------------------------------------------------------------------- adapters per run kind

RUN_KINDS: Registry[Callable[[dict, Path, Path], Run]] = Registry("run kind")


@RUN_KINDS.register("prune", "kenprune prune: unstructured / N:M pruning with per-layer sparsity")
def read_prune(data: dict, source: Path, path: Path) -> Run:
    run = _base(data, source, path, "prune")
    sparsity = _pick(data, "sparsity.achieved", "achieved_sparsity", "actual_sparsity", "sparsity.actual",
                     "block_linears.sparsity", "sparsity_report.block_linears.sparsity", "sparsity.block_linears.sparsity",
                     "sparsity.target", "target_sparsity", "sparsity_target", "targets.sparsity", "sparsity", default=None)
    run.sparsity = None if sparsity is None else _number(sparsity, "sparsity", source)
    target = _pick(data, "target_sparsity", "sparsity_target", "sparsity.target", "targets.sparsity", default=None)
    pattern = _pick(data, "pattern", "targets.pattern", "nm", default=None)
    run.summary["sparsity"] = format_number(run.sparsity, 3) + (f" (target {format_number(float(target), 3)})"
                                                        if isinstance(target, (int, float)) else "")
    if pattern:
        run.summary["pattern"] = str(pattern)
    run.layers = _per_layer(data, source, "sparsity", "layers", "per_layer", "layer_sparsity",
                            "per_layer_sparsity", "sparsity.per_layer", "sparsity_per_layer", "sparsity_report.layers",
                            "sparsity.layers")
    if run.layers is None:
        _require(data, source, "per-layer sparsity", "layers", "per_layer", "layer_sparsity")
    if isinstance(target, (int, float)):
        run.layers.target = float(target)
    run.quality = _quality(data, source)
    _common_summary(data, source, run)
    return run


@RUN_KINDS.register("ken", "kenprune ken: a KEN subnetwork with per-tensor kept fractions (ken.json)")
def read_ken(data: dict, source: Path, path: Path) -> Run:
    run = _base(data, source, path, "ken", default_method="ken", model_paths=("model", "finetuned", "pretrained"))
    run.layers = _per_layer(data, source, "kept fraction", "tensors", "kept_fractions", "per_tensor")
    if run.layers is None:
        _require(data, source, "per-tensor kept fractions", "tensors", "kept_fractions", "per_tensor")
    kept = _pick(data, "totals.kept_fraction_of_selected", "kept_fraction_total", default=None)
    if isinstance(kept, (int, float)):
        run.sparsity = 1 - float(kept)
        run.summary["kept fraction of selected tensors"] = format_number(float(kept), 3)
    stored = _pick(data, "totals.stored_fraction", default=None)
    if isinstance(stored, (int, float)):
        run.summary["stored fraction of all parameters"] = format_number(float(stored), 3)
    for key in ("k", "kernel", "value_dtype"):
        if isinstance(data.get(key), (int, float, str)):
            run.summary[key.replace("_", " ")] = str(data[key])
    subnet = _pick(data, "files.subnetwork", "subnetwork", default=None)
    candidates = [Path(subnet), path / Path(subnet).name] if isinstance(subnet, str) else []
    run.subnetwork = next((c for c in candidates + [path / "subnetwork.safetensors"] if c.is_file()), None)
    model = _pick(data, "files.model", default=None)
    candidates = [Path(model), path / Path(model).name] if isinstance(model, str) else []
    run.optimized = next((c for c in candidates + [path / "model"] if c.is_dir()), None)
    pre = _pick(data, "pretrained", "base", default=None)
    run.pretrained = _pick(pre, "source", "name", default=None) if isinstance(pre, dict) else pre
    if isinstance(pre, dict) and isinstance(pre.get("name"), str):
        run.summary["pre-trained"] = pre["name"]
    run.quality = _quality(data, source)
    _common_summary(data, source, run)
    return run


def _history(result: Any, source: Path, label: str) -> tuple[list[float], list[float]]:
    history = _pick(result, "history", "generations", default=None) if isinstance(result, dict) else result
    if not isinstance(history, list) or not history:
        raise RunFormatError(f"{source}: the {label} search has no per-generation history (a non-empty list)")
    evals, best = [], []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise RunFormatError(f"{source}: history entry {i} of the {label} search is not an object")
        evals.append(_number(_pick(entry, "evaluations", "evals", "generation", default=i + 1), "evaluations", source))
        best.append(_number(_require(entry, source, f"best fitness in history entry {i}", "best_fitness",
                                     "fitness", "best"), "best fitness", source))
    return evals, best


@RUN_KINDS.register("search", "kenprune search: allocation search with per-generation history")
def read_search(data: dict, source: Path, path: Path) -> Run:
    run = _base(data, source, path, "search", default_method="search")
    results = _pick(data, "strategies", "searches", "results", default=None)
    if isinstance(results, dict):
        items = list(results.items())
    elif isinstance(results, list):
        items = [(str(_pick(r, "strategy", default=f"search {i}")), r) for i, r in enumerate(results)]
    else:  # one search: its result (with the history) may sit under "result"
        result = _pick(data, "result", default=data)
        items = [(str(_pick(data, "strategy", "result.strategy", "search.strategy", default="search")), result)]
    for label, result in items:
        run.histories[label] = _history(result, source, label)
        best_fn = _pick(result, "best", default=None) if isinstance(result, dict) else None
        fitness = _pick(result, "fitness", default=None) if isinstance(result, dict) else None
        row = format_number(run.histories[label][1][-1]) if fitness is None else format_number(float(fitness))
        run.summary[f"best fitness ({label})"] = row + (f": {best_fn}" if isinstance(best_fn, str) else "")
        run.summary[f"evaluations ({label})"] = format_number(run.histories[label][0][-1])
    if isinstance(data.get("allocation"), str):
        run.summary["allocation found"] = data["allocation"]
    ratios = _pick(data, "block_ratios", "ratios", "best_ratios", "result.ratios", default=None)
    if isinstance(ratios, list) and ratios:
        run.layers = _per_layer({"r": ratios}, source, "sparsity", "r")
    target = _pick(data, "target", "target_sparsity", default=None)
    if isinstance(target, (int, float)):
        run.sparsity = float(target)
        run.summary["target sparsity"] = format_number(float(target), 3)
        if run.layers:
            run.layers.target = float(target)
    run.quality = _quality(data, source)
    _common_summary(data, source, run)
    return run


@RUN_KINDS.register("structured", "kenprune prune --method structured: whole heads and channels removed")
def read_structured(data: dict, source: Path, path: Path) -> Run:
    run = _base(data, source, path, "structured", default_method="structured")
    before = _require(data, source, "per-block widths before pruning", "widths_before", "structured.widths_before")
    after = _require(data, source, "per-block widths after pruning", "widths_after", "structured.widths_after")
    if not (isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and before):
        raise RunFormatError(f"{source}: widths_before and widths_after should be lists of equal, non-zero length")
    fractions = []
    for b, a in zip(before, after):
        keys = [k for k in ("heads", "intermediate") if isinstance(b, dict) and b.get(k)]
        if not keys or not isinstance(a, dict):
            raise RunFormatError(f"{source}: a block width record has no heads/intermediate counts")
        fractions.append(sum(1 - _number(a.get(k), k, source) / b[k] for k in keys) / len(keys))
    run.layers = LayerValues([f"block {i}" for i in range(len(before))], fractions, "fraction of units removed")
    removed = _pick(data, "block_parameters_removed", "structured.block_parameters_removed", default=None)
    run.sparsity = None if removed is None else _number(removed, "block_parameters_removed", source)
    run.summary["block parameters removed"] = format_number(run.sparsity, 3)
    for key in ("parameters_before", "parameters_after", "importance"):
        if key in data:
            run.summary[key.replace("_", " ")] = str(data[key])
    speedup = _pick(data, "latency.speedup", default=None)
    if isinstance(speedup, (int, float)):
        run.summary["latency speedup"] = f"{speedup:.2f}x"
    run.quality = _quality(data, source)
    _common_summary(data, source, run)
    return run


@RUN_KINDS.register("recover", "kenprune recover: LoRA fine-tuning of a pruned model, quality before and after")
def read_recover(data: dict, source: Path, path: Path) -> Run:
    run = _base(data, source, path, "recover", default_method="lora-recovery")
    run.quality = _quality(data, source)
    if run.quality is None:
        _require(data, source, "perplexity or accuracy before/after", "perplexity.before", "perplexity.after")
    for key in ("steps", "lr", "rank", "trainable_parameters", "loss_first", "loss_last"):
        value = _pick(data, f"training.{key}", default=None)
        if isinstance(value, (int, float)):
            run.summary[f"training {key.replace('_', ' ')}"] = format_number(float(value))
    _common_summary(data, source, run)
    return run


@RUN_KINDS.register("eval", "kenprune eval: one perplexity or accuracy under a pinned protocol (a dense baseline)")
def read_eval(data: dict, source: Path, path: Path) -> Run:
    metric = _require(data, source, "metric", "metric")
    value = _number(_require(data, source, str(metric), str(metric)), str(metric), source)
    run = _base(data, source, path, "eval", default_method="dense (no pruning)")
    run.summary[str(metric)] = format_number(value)
    for key in ("correct", "total", "tokens_per_second"):
        if isinstance(data.get(key), (int, float)):
            run.summary[key.replace("_", " ")] = format_number(float(data[key]), 5)
    _common_summary(data, source, run)
    run.sparsity, run.quality = 0.0, (str(metric), value, value)  # the dense point on quality-vs-sparsity plots
    return run


# ----------------------------------------------------------------------------- entry point

def _find_json(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise KenpruneError(f"{path} does not exist; give a run folder written by kenprune prune/ken/search")
    for name in RESULT_FILES:
        if (path / name).is_file():
            return path / name
    candidates = [p for p in sorted(path.glob("*.json")) if p.name not in NOT_RESULTS]
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) or "none"
    raise KenpruneError(f"{path} has no kenprune result JSON ({' or '.join(RESULT_FILES[:2])}; JSON files found: "
                        f"{found}); give a run folder written by kenprune prune/ken/search")


def detect_kind(data: dict) -> str:
    """Which adapter reads this JSON: an explicit kind/command, else what its fields look like."""
    explicit = _pick(data, "kind", "command", default=None)
    if isinstance(explicit, str) and explicit in RUN_KINDS:
        return explicit
    if "metric" in data and "method" not in data:
        return "eval"
    method = str(data.get("method", "")).lower()
    if method == "ken" or "kept_fractions" in data or ("kernel" in data and "tensors" in data):
        return "ken"
    if "recover" in method or "training" in data:
        return "recover"
    if method.startswith("structured") or "widths_after" in data:
        return "structured"
    if any(k in data for k in ("history", "strategies", "searches")) or _pick(data, "result.history", default=None):
        return "search"
    return "prune"


def read_run(path: str | Path) -> Run:
    """Read one run folder (or its result JSON) through the adapter for its kind."""
    path = Path(path)
    source = _find_json(path)
    try:
        data = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFormatError(f"{source} is not valid JSON ({exc}); re-run the command that wrote it") from None
    if not isinstance(data, dict):
        raise RunFormatError(f"{source} should hold a JSON object, found {type(data).__name__}")
    kind = detect_kind(data)
    try:
        run = RUN_KINDS.get(kind)(data, source, path if path.is_dir() else path.parent)
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as exc:  # shapes no adapter expects
        raise RunFormatError(f"{source} is not a well-formed {kind} result ({type(exc).__name__}: {exc}); "
                             f"re-run the command that wrote it") from None
    run.name = path.name if path.is_dir() else path.stem
    return run
