"""Turn a run folder's run.json (kenprune.record) into what a report shows, with one small function per kind.

Every command writes the same versioned record, so this module reads typed fields only: the common part
(model, method, quality with its protocol, per-layer table, files, stages, provenance) is read once, and
one function per `record.kind` (registered in RUN_KINDS) adds that kind's rows from `record.details`.
A folder without a run.json of this version fails with the record module's one-line RecordError.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..record import RECORD_FILE, RecordError, RunRecord, read
from ..registry import Registry


@dataclass
class LayerValues:
    """One value per layer (or tensor): what a bar chart shows."""
    labels: list[str]
    values: list[float]
    quantity: str  # the record's layer_quantity: "sparsity", "kept fraction", "removed fraction"
    target: float | None = None


@dataclass
class Run:
    """What the report shows about one run folder."""
    path: Path  # the run folder
    record: RunRecord
    name: str  # the run folder's name, or the record file's stem when a file was given
    source: Path  # the run.json read
    summary: dict[str, str] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    layers: LayerValues | None = None
    histories: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # training loss per step
    sparsity: float | None = None
    quality: tuple[str, float | None, float | None] | None = None  # (metric, before, after)
    series: str = ""  # the line this run belongs to on a quality-vs-sparsity plot
    subnetwork: Path | None = None  # KEN: the subnetwork file, for the mask views
    optimized: Path | None = None  # KEN: the optimized model folder
    pretrained: str | None = None  # KEN: the base model the subnetwork applies to

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def model(self) -> str:
        return str(self.record.model["name"])

    @property
    def method(self) -> str:
        return self.record.method or "no pruning"



# ----------------------------------------------------------------------------- text for table cells

def format_number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def bytes_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _rows(summary: dict[str, str], rows: Mapping[str, Any]) -> None:
    """Add rows whose value is present; numbers shown to 4 significant digits (absent values are left out)."""
    for key, value in rows.items():
        if value is None:
            continue
        summary[key] = format_number(float(value)) if isinstance(value, float) else str(value)


def _fraction(value: float | None) -> str | None:
    return None if value is None else format_number(float(value), 3)


def _bytes(value: int | None) -> str | None:
    return None if value is None else bytes_text(value)


def present(data: Any) -> Any:
    """`data` without its None values (at any depth): what a table shows."""
    if isinstance(data, dict):
        return {k: present(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [present(v) for v in data if v is not None]
    return data


# ----------------------------------------------------------------------------- what every kind shares

def _quality(run: Run) -> None:
    """Quality rows (one per entry, labelled by its model), the change, the protocol and the plot's tuple."""
    record = run.record
    for q in record.quality:
        run.summary[f"{q.metric} ({q.model})"] = format_number(q.value)
    main = record.quality_of("after") or record.quality_of("before")
    if main is None:
        return
    before, after = record.quality_of("before", main.metric), record.quality_of("after", main.metric)
    run.quality = (main.metric, before and before.value, after and after.value)
    if before is not None and after is not None and before.value:
        run.summary[f"{main.metric} change"] = f"{(after.value - before.value) / before.value:+.1%}"
    run.protocol = {"metric": main.metric, "data": main.data, **main.protocol}


def _head(run: Run) -> None:
    """Model, method, quality, per-layer values: read before the kind's rows."""
    record = run.record
    _rows(run.summary, {"model": run.model, "source": record.model.get("source"), "method": record.method})
    _quality(run)
    if record.layers:
        run.layers = LayerValues([layer.name for layer in record.layers], [layer.value for layer in record.layers],
                                 record.layer_quantity or "value")
    run.sparsity = record.sparsity
    run.series = run.method


def _tail(run: Run) -> None:
    """Files, time, memory, versions: the rows after the kind's."""
    record = run.record
    for entry in record.files:
        run.summary[f"size: {entry.role or entry.path} ({entry.format})"] = bytes_text(entry.bytes)
    if record.stages:
        total = sum(s.seconds for s in record.stages)
        run.summary["time"] = f"{total:.1f} s (" + ", ".join(f"{s.name} {s.seconds:.1f} s" for s in record.stages) + ")"
    _rows(run.summary, {"peak memory (RSS)": _bytes(record.peak_rss_bytes)})
    versions = present(record.provenance.get("versions") or {})
    if versions:
        run.summary["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())


# ----------------------------------------------------------------------------- one function per kind

RUN_KINDS: Registry[Callable[[Run], None]] = Registry("run kind")


@RUN_KINDS.register("prune", "kenprune prune: unstructured / N:M pruning with per-Linear sparsity")
def prune_view(run: Run) -> None:
    d = run.record.details
    target = d["target"]
    numeric_target = float(target) if isinstance(target, (int, float)) else None
    run.summary["sparsity"] = format_number(d["sparsity"], 3) + (
        f" (target {format_number(numeric_target, 3)})" if numeric_target is not None else f" (target {target})")
    _rows(run.summary, {"pattern": d["pattern"], "group": d.get("group"),
                        "overall sparsity (all parameters)": _fraction(d["overall"]["sparsity"])})
    allocation = d.get("allocation")
    if allocation:
        _rows(run.summary, {"allocation": allocation["spec"],
                            "allocation weighted mean": _fraction(allocation.get("weighted_mean"))})
        if allocation["spec"] != "uniform":
            run.series = f"{run.method} + {allocation['spec']}"
    sizes = d["sizes"]
    _rows(run.summary, {"dense folder": _bytes(sizes["dense_folder_bytes"]),
                        "sparse vs dense (same dtype)": _fraction(sizes["sparse_vs_dense_same_dtype"])})
    run.protocol["calibration"] = d["calibration"]
    if run.layers is not None:
        run.layers.target = numeric_target


@RUN_KINDS.register("structured", "kenprune prune --method structured: whole heads and channels removed")
def structured_view(run: Run) -> None:
    d = run.record.details
    plan = d["plan"]
    _rows(run.summary, {"block parameters removed": _fraction(d["block_parameters_removed"]),
                        "parameters": f"{d['parameters_before']:,} -> {d['parameters_after']:,}",
                        "importance": d["importance"], "attention unit": d["attention_unit"],
                        "plan ratio": _fraction(plan["ratio"]), "uniform widths": d["uniform_widths"]})
    speedup = (d.get("latency") or {}).get("speedup")
    if speedup:
        _rows(run.summary, {
            "prefill speedup": f"{speedup['prefill_measured']:.2f}x (ideal {speedup['prefill_ideal']:.2f}x)",
            "decode speedup": f"{speedup['decode_measured']:.2f}x (ideal {speedup['decode_ideal']:.2f}x)"})
    if run.layers is not None:
        run.layers.target = float(plan["ratio"])


@RUN_KINDS.register("ken", "kenprune ken: a KEN subnetwork with per-tensor kept fractions")
def ken_view(run: Run) -> None:
    d = run.record.details
    totals, sizes = d["totals"], d["sizes"]
    _rows(run.summary, {"k": d["k"], "kernel": d["kernel"], "value dtype": d["value_dtype"],
                        "pre-trained": d["pretrained"].get("name"), "fine-tuned": d["finetuned"].get("name"),
                        "kept fraction of selected tensors": _fraction(totals["kept_fraction_of_selected"]),
                        "stored fraction of all parameters": _fraction(totals["stored_fraction"]),
                        "subnetwork vs fine-tuned file": _fraction(sizes["ratio"]),
                        "clipped tensors": len(d["clipped_tensors"]) or None})
    subnetwork, model = run.record.file("subnetwork"), run.record.file("model")
    if subnetwork is not None and (run.path / subnetwork.path).is_file():
        run.subnetwork = run.path / subnetwork.path
    if model is not None and (run.path / model.path).is_dir():
        run.optimized = run.path / model.path
    run.pretrained = d["pretrained"].get("source")


@RUN_KINDS.register("ken-apply", "kenprune ken apply: a subnetwork applied to its base model")
def ken_apply_view(run: Run) -> None:
    d = run.record.details
    base = d["base"]
    _rows(run.summary, {"subnetwork": d["subnetwork"], "base": base.get("name"),
                        "optimized weights sha256": d["optimized_sha256"]})
    subnetwork = run.path / d["subnetwork"]  # an absolute path stays as it is
    run.subnetwork = subnetwork if subnetwork.is_file() else None
    model = run.record.file("model")
    run.optimized = run.path / model.path if model is not None and (run.path / model.path).is_dir() else None
    run.pretrained = base.get("source")


@RUN_KINDS.register("search", "kenprune search: allocation search with per-generation history")
def search_view(run: Run) -> None:
    d = run.record.details
    result, search = d["result"], d["search"]
    run.histories[search["strategy"]] = ([float(h["evaluations"]) for h in result["history"]],
                                         [float(h["best_fitness"]) for h in result["history"]])
    _rows(run.summary, {"best fitness": f"{format_number(d['fitness'])}: {d['function']}",
                        "allocation found": d["allocation"], "target sparsity": _fraction(d["target"]),
                        "lambda": d["lambda"], "strategy": search["strategy"],
                        "evaluations": result["evaluations"], "generations": result["generations"],
                        "rejected candidates": result.get("rejected"), "executor": d["executor"]["kind"]})
    run.series = f"{run.method} + {d['allocation']}"
    if run.layers is not None:
        run.layers.target = float(d["target"])


@RUN_KINDS.register("recover", "kenprune recover: LoRA fine-tuning of a pruned model, quality before and after")
def recover_view(run: Run) -> None:
    t = run.record.details["training"]
    _rows(run.summary, {"training data": t["data"], "training steps": t["steps"], "learning rate": t["lr"],
                        "LoRA rank / alpha": f"{t['rank']} / {t['alpha']}",
                        "trainable parameters": f"{t['trainable_parameters']:,}",
                        "loss first -> last": f"{t['loss_first']:.4g} -> {t['loss_last']:.4g}"})


@RUN_KINDS.register("finetune", "kenprune finetune: a pre-trained model fine-tuned on a task")
def finetune_view(run: Run) -> None:
    d = run.record.details
    loss = d["loss"]
    _rows(run.summary, {"task": d["task"], "steps": d["steps"], "epochs": d.get("epochs"), "learning rate": d["lr"],
                        "batch size": d["batch_size"], "seqlen": d.get("seqlen"),
                        "loss first -> last": f"{loss['first']:.4g} -> {loss['last']:.4g}",
                        "training time": f"{d['train_seconds']:.1f} s", "training data": d["data"]["train"],
                        "held-out data": d["data"].get("heldout")})
    if loss["curve"]:
        run.curves["training loss"] = ([float(i + 1) for i in range(len(loss["curve"]))],
                                       [float(x) for x in loss["curve"]])


@RUN_KINDS.register("eval", "kenprune eval: one perplexity or accuracy under a pinned protocol (a dense baseline)")
def eval_view(run: Run) -> None:
    if run.quality is not None:  # the dense point on quality-vs-sparsity plots
        run.sparsity, run.quality = 0.0, (run.quality[0], run.quality[2], run.quality[2])


# ----------------------------------------------------------------------------- entry point

def read_run(path: str | Path) -> Run:
    """Read one run folder's run.json (RecordError, one line, for anything else) through its kind's function."""
    path = Path(path)
    record = read(path)
    run = Run(path, record, path.name, path / RECORD_FILE) if path.is_dir() else Run(path.parent, record, path.stem, path)
    try:
        _head(run)
        RUN_KINDS.get(record.kind)(run)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"{run.source} is not a well-formed {record.kind} run record "
                          f"({type(exc).__name__}: {exc}); re-run the command that wrote it") from None
    _tail(run)
    return run
