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
from .zero_shot import TASK_METRIC, task_view


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
    headline: str = ""  # one line a comparison table shows for this run
    warnings: list[str] = field(default_factory=list)  # measurements not to be trusted, shown above the tables
    notes: list[str] = field(default_factory=list)  # sentences shown instead of a figure that would say nothing
    baselines: dict[str, float] = field(default_factory=dict)  # search: fitness of other allocations, same proxy
    zero_shot: Any = None  # report.zero_shot.TaskView: per-task accuracy of each model, when the run scored tasks

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
    """Binary units, as the CLI prints them: 517.4 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def percent(value: float) -> str:
    """0.25 -> '25 %'; small or fine values keep one decimal."""
    text = f"{100 * value:.1f}".removesuffix(".0")
    return f"{text} %"


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
    """One row per metric with every model side by side (references, before, after) and the change; the protocol
    and the plot's tuple."""
    record = run.record
    order = {"reference": 0, "before": 1, "after": 2}
    for metric in dict.fromkeys(q.metric for q in record.quality if q.metric != TASK_METRIC):  # tasks: own table
        entries = sorted((q for q in record.quality if q.metric == metric), key=lambda q: order[q.role])
        text = ", ".join(f"{q.model} {format_number(q.value)}{_dtype_mark(q.protocol)}" for q in entries)
        before, after = record.quality_of("before", metric), record.quality_of("after", metric)
        if before is not None and after is not None and before.value:
            text += f" ({after.model} vs {before.model}: {(after.value - before.value) / before.value:+.1%})"
        run.summary[metric] = text
    main = record.quality_of("after") or record.quality_of("before")
    if main is None:
        return
    before, after = record.quality_of("before", main.metric), record.quality_of("after", main.metric)
    run.quality = (main.metric, before and before.value, after and after.value)
    run.protocol = {"metric": main.metric, "data": main.data,
                    **{k: v for k, v in main.protocol.items() if k != "tasks"}}  # per-task: the zero-shot table


def _quality_text(run: Run) -> str:
    """'perplexity 35' (after), for a comparison table."""
    return (f"{run.quality[0]} {format_number(run.quality[2])}{_dtype_mark(run.protocol)}"
            if run.quality and run.quality[2] is not None else "")


def _dtype_mark(protocol: Mapping[str, Any]) -> str:
    """' (bfloat16 evaluation)' for a figure computed in a reduced dtype; '' for the pinned float32."""
    dtype = (protocol or {}).get("dtype")
    return f" ({dtype} evaluation)" if dtype and dtype != "float32" else ""


def _head(run: Run) -> None:
    """Model, method, quality, per-layer values: read before the kind's rows."""
    record = run.record
    _rows(run.summary, {"model": run.model, "source": record.model.get("source"), "method": record.method})
    _quality(run)
    run.zero_shot = task_view(record)
    if record.layers:
        run.layers = LayerValues([layer.name for layer in record.layers], [layer.value for layer in record.layers],
                                 record.layer_quantity or "value")
    run.sparsity = record.sparsity
    run.series = run.method
    run.headline = ", ".join(x for x in (run.method, f"sparsity {format_number(run.sparsity, 3)}"
                                         if run.sparsity is not None else "", _quality_text(run)) if x)


def _tail(run: Run) -> None:
    """Files, time, memory, versions: the rows after the kind's."""
    record = run.record
    for entry in record.files:
        run.summary[f"size: {entry.role or entry.path} ({entry.format})"] = bytes_text(entry.bytes)
    if record.stages:
        total = sum(s.seconds for s in record.stages)
        run.summary["time"] = f"{total:.1f} s (" + ", ".join(f"{s.name} {s.seconds:.1f} s" for s in record.stages) + ")"
    _rows(run.summary, {"peak memory (RSS)": _bytes(record.peak_rss_bytes)})
    precision = record.details.get("precision") or {}
    if precision.get("dtype"):
        run.summary["compute dtype"] = f"{precision['dtype']} ({precision.get('reason', '')})"
    versions = present(record.provenance.get("versions") or {})
    if versions:
        run.summary["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())


def _spread(values: list[float], unit: str, digits: int = 3) -> tuple[float, float, str]:
    """(median, max - min, 'median 0.412 s over 5 repeats, range 0.405-0.431 s') of per-round measurements."""
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    width = ordered[-1] - ordered[0]
    if n == 1:
        return median, 0.0, f"{median:.{digits}g} {unit} (1 repeat: no spread known)"
    return median, width, (f"{median:.{digits}g} {unit}, median of {n} repeats "
                           f"(range {ordered[0]:.{digits}g}-{ordered[-1]:.{digits}g})")


def _latency(run: Run, latency: Mapping[str, Any]) -> None:
    """Prefill and decode, dense against pruned, with their repeats and spread; speed-ups with their ideal.

    A speed-up above its ideal, or a difference smaller than the spread of its repeats, is a warning (the record's
    own `flags` first), and the speed-up is then not printed as a result."""
    dense, pruned = latency.get("dense") or {}, latency.get("pruned") or {}
    speedup = latency.get("speedup") or {}
    if "flags" in latency:
        flags = [str(f) for f in latency["flags"]]
    else:  # a record written without flags: judge it the same way the structured job does
        from ..evaluate.latency import latency_flags

        flags = latency_flags(dense, pruned, speedup) if dense and pruned and speedup else []
    for phase, key, unit, faster in (("prefill", "prefill_seconds", "s", "lower"),
                                     ("decode", "decode_tokens_per_second", "tokens/s", "higher")):
        rows = []
        for label, side in (("dense", dense), ("pruned", pruned)):
            values = side.get(f"{key}_all") or ([side[key]] if isinstance(side.get(key), (int, float)) else [])
            if values:
                rows.append(f"{label} {_spread(values, unit)[2]}")
        if rows:
            run.summary[f"{phase} ({faster} is faster)"] = "; ".join(rows)
        measured, ideal = speedup.get(f"{phase}_measured"), speedup.get(f"{phase}_ideal")
        trusted = not any(f.startswith(phase) for f in flags)
        if isinstance(measured, (int, float)):
            ideal_text = f" (ideal {ideal:.2f}x)" if isinstance(ideal, (int, float)) else ""
            run.summary[f"{phase} speed-up"] = (f"{measured:.2f}x{ideal_text}" if trusted else
                                                f"not a result: measured {measured:.2f}x{ideal_text}, see the warning")
    run.warnings += flags


# ----------------------------------------------------------------------------- one function per kind

RUN_KINDS: Registry[Callable[[Run], None]] = Registry("run kind")


def _uniform(values: list[float]) -> bool:
    """Every layer at the same value: a bar chart would say nothing."""
    return bool(values) and max(values) - min(values) <= 1e-6


def _uniform_note(run: Run, what: str) -> None:
    layers = run.layers
    if layers is not None and _uniform(layers.values):
        value, target = layers.values[0], layers.target
        off_target = (f" (target {format_number(target, 3)})" if target is not None and abs(value - target) > 1e-6
                      else "")
        run.notes.append(f"Every one of the {len(layers.values)} {what}s has {layers.quantity} "
                         f"{format_number(value, 3)}{off_target}: a uniform run, so there is no per-{what} chart.")
        run.layers = None


@RUN_KINDS.register("prune", "kenprune prune: unstructured / N:M pruning with per-Linear sparsity")
def prune_view(run: Run) -> None:
    d = run.record.details
    target, sizes = d["target"], d["sizes"]
    numeric_target = float(target) if isinstance(target, (int, float)) else None
    target_text = ("" if target is None else f" (target {format_number(numeric_target, 3)})"
                   if numeric_target is not None else f" (target {target})")
    run.summary["sparsity"] = format_number(d["sparsity"], 3) + target_text
    _rows(run.summary, {"pattern": d.get("pattern"), "group": d.get("group"),
                        "overall sparsity (all parameters)": _fraction((d.get("overall") or {}).get("sparsity"))})
    allocation = d.get("allocation")
    if allocation:
        _rows(run.summary, {"allocation": allocation["spec"],
                            "allocation weighted mean": _fraction(allocation.get("weighted_mean"))})
        if allocation["spec"] != "uniform":
            run.series = f"{run.method} + {allocation['spec']}"
    dense, sparse, ratio = (sizes.get(k) for k in ("dense_folder_bytes", "sparse_file_bytes",
                                                   "sparse_vs_dense_same_dtype"))
    if dense is not None and sparse is not None:
        run.summary["size bought"] = (f"sparse file {bytes_text(sparse)} vs dense folder {bytes_text(dense)}"
                                      + (f" ({format_number(ratio, 3)} of the dense tensors in the same dtype)"
                                         if ratio is not None else ""))
    if d.get("latency"):
        _latency(run, d["latency"])
    memory = d.get("memory")
    if memory and memory.get("path") == "streamed":  # models bigger than memory (engine/streaming.py)
        resumed = memory.get("resumed_from_block")
        run.summary["memory path"] = (f"streamed block by block ({memory.get('reason', '')})"
                                      + (f"; resumed from block {resumed}" if resumed else ""))
    if d.get("weights_sha256"):
        run.summary["pruned weights sha256"] = d["weights_sha256"][:16]
    if d.get("calibration"):
        run.protocol["calibration"] = d["calibration"]
    if d.get("federated"):
        from ..federated.report import federated_rows

        _rows(run.summary, federated_rows(d["federated"]))
        run.series = f"{run.method} (federated, {d['federated']['mode']})"
    if run.layers is not None:
        run.layers.target = numeric_target
    _uniform_note(run, "layer")


@RUN_KINDS.register("structured", "kenprune prune --method structured: whole heads and channels removed")
def structured_view(run: Run) -> None:
    d = run.record.details
    plan = d["plan"]
    _rows(run.summary, {"block parameters removed": _fraction(d["block_parameters_removed"]),
                        "parameters": f"{d['parameters_before']:,} -> {d['parameters_after']:,}",
                        "importance": d.get("importance"), "attention unit": d.get("attention_unit"),
                        "plan ratio": _fraction(plan["ratio"]),
                        "widths": None if d.get("uniform_widths") is None else
                        ("the same in every block" if d["uniform_widths"] else "differ between blocks")
                        + ("; reloads with kenprune.load only" if d.get("loader") == "kenprune" else "")})
    _seed_rows(run, d)
    if d.get("federated"):
        from ..federated.structured import federated_rows

        _rows(run.summary, federated_rows(d["federated"]))
    if d.get("latency"):
        _latency(run, d["latency"])
    run.headline = (f"{run.method}, {percent(float(d['block_parameters_removed']))} of block parameters removed"
                    + (f", {_quality_text(run)}" if _quality_text(run) else ""))
    if run.layers is not None:
        run.layers.target = float(plan["ratio"])
    _uniform_note(run, "block")


def _seed_rows(run: Run, d: Mapping[str, Any]) -> None:
    """Beta-Rank's beta, the selection stability, the gates and the training of a structured run (issue 20)."""
    st, gates = d.get("stability"), d.get("gates")
    steps = {key: d[key]["steps"] for key in ("training", "recovery", "scratch") if d.get(key)}
    _rows(run.summary, {
        "beta": d.get("beta"),
        "selection stability": None if not st else
        (f"kept overlap {format_number(st['kept_overlap'], 3)}, removed overlap "
         f"{format_number(st['removed_overlap'], 3)} (Jaccard, mean over pairs of {st['runs']} calibration subsets)"),
        "gates": None if not gates else
        (f"largest removed {format_number(gates['removed_gate_max'], 3)}, smallest kept "
         f"{format_number(gates['kept_gate_min'], 3)}, {percent(gates['gates_binary_fraction'])} within 0.05 of 0/1"),
        "training": ", ".join(f"{key} {n} steps" for key, n in steps.items()) or None})


@RUN_KINDS.register("ken", "kenprune ken: a KEN subnetwork with per-tensor kept fractions")
def ken_view(run: Run) -> None:
    d = run.record.details
    totals, sizes = d["totals"], d.get("sizes") or {}
    kept = totals["kept_fraction_of_selected"]
    allocation = d.get("allocation")
    _rows(run.summary, {"kept": f"{percent(kept)} of selected values (k = {d['k']} per row)",
                        "k per tensor": None if not allocation else
                        f"allocated by {allocation['spec']} over |fine-tuned - pre-trained| "
                        f"({percent(min(layer.value for layer in run.record.layers))} to "
                        f"{percent(max(layer.value for layer in run.record.layers))} kept per tensor)",
                        "selection": d.get("method"), "kernel": d.get("kernel"), "value dtype": d.get("value_dtype"),
                        "pre-trained": d["pretrained"].get("name"), "fine-tuned": d["finetuned"].get("name"),
                        "stored": None if totals.get("stored_fraction") is None else
                        f"{percent(totals['stored_fraction'])} of all parameters",
                        "clipped tensors": len(d.get("clipped_tensors") or []) or None})
    if sizes.get("subnetwork_bytes") is not None and sizes.get("finetuned_safetensors_bytes") is not None:
        run.summary["files"] = (f"subnetwork {bytes_text(sizes['subnetwork_bytes'])} vs fine-tuned "
                                f"{bytes_text(sizes['finetuned_safetensors_bytes'])}"
                                + (f" ({percent(sizes['ratio'])})" if sizes.get("ratio") is not None else ""))
    ken = _versus_finetuned(run)
    run.sparsity = None  # KEN keeps a fraction of selected values: not a pruning sparsity to plot or list
    from ..ken.selections import label_of

    run.headline = ", ".join(x for x in (f"{label_of(d.get('method'))}, kept {percent(kept)} of selected values",
                                         run.summary.get(ken.metric) if ken is not None else "") if x)
    subnetwork, model = run.record.file("subnetwork"), run.record.file("model")
    if subnetwork is not None and (run.path / subnetwork.path).is_file():
        run.subnetwork = run.path / subnetwork.path
    if model is not None and (run.path / model.path).is_dir():
        run.optimized = run.path / model.path
    run.pretrained = d["pretrained"].get("source")


def _versus_finetuned(run: Run):
    """The optimized model's quality entry, its summary line extended by the change against the fine-tuned model."""
    after, tuned = run.record.quality_of("after"), next(
        (q for q in run.record.quality if q.role == "reference" and q.model == "fine-tuned"), None)
    if after is not None and tuned is not None and tuned.metric == after.metric and tuned.value:
        run.summary[after.metric] += f" ({after.model} vs fine-tuned: {(after.value - tuned.value) / tuned.value:+.1%})"
    return after


@RUN_KINDS.register("ken-lora", "kenprune ken lora: LoRA with as many stored bytes as a KEN subnetwork")
def ken_lora_view(run: Run) -> None:
    d = run.record.details
    _rows(run.summary, {
        "adapter": f"rank {d['rank']} on {', '.join(d['targets'])}: {bytes_text(d['adapter_bytes'])}"
                   + ("" if d.get("budget_bytes") is None else
                      f" for a budget of {bytes_text(d['budget_bytes'])} ({d['budget_source']})"),
        "stored": f"{percent(d['stored_fraction'])} of the fine-tuned model's parameters",
        "training": f"{d['steps']} steps on {d['finetune']['data']} (the fine-tune's data, batches and seed), "
                    f"lr {d['lr']:g}, loss {format_number(d['loss_first'], 3)} -> {format_number(d['loss_last'], 3)}",
        "pre-trained": d["pretrained"].get("name"), "fine-tuned": d["finetuned"].get("name")})
    after = _versus_finetuned(run)
    run.sparsity = None
    run.headline = ", ".join(x for x in (f"LoRA rank {d['rank']}, {bytes_text(d['adapter_bytes'])} adapter",
                                         run.summary.get(after.metric) if after is not None else "") if x)
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
    run.headline = f"KEN subnetwork applied to {base.get('name') or 'its base model'}"


@RUN_KINDS.register("search", "kenprune search: allocation search with per-generation history")
def search_view(run: Run) -> None:
    d = run.record.details
    result, search = d["result"], d["search"]
    history = result.get("history") or []
    if len(history) > 1:
        run.histories[search["strategy"]] = ([float(h["evaluations"]) for h in history],
                                             [float(h["best_fitness"]) for h in history])
    else:
        run.notes.append(f"The search ran {len(history) or 'no'} generation{'s' if len(history) != 1 else ''} "
                         f"({result.get('evaluations', 0)} evaluations): best fitness {format_number(d['fitness'])}, "
                         f"no progress over evaluations to draw.")
    run.baselines = {k: float(v) for k, v in (d.get("baselines") or {}).items() if isinstance(v, (int, float))}
    against = ", ".join(f"{'OWL' if k == 'owl' else k} {format_number(v)}" for k, v in run.baselines.items())
    _rows(run.summary, {"best fitness": f"{format_number(d['fitness'])} for {d['function']} (lower is better"
                                        + (f"; same proxy: {against})" if against else ")"),
                        "allocation found": d["allocation"], "target sparsity": _fraction(d.get("target")),
                        "lambda": d.get("lambda"), "strategy": search["strategy"],
                        "evaluations": result.get("evaluations"), "generations": result.get("generations"),
                        "rejected candidates": result.get("rejected"),
                        "executor": (d.get("executor") or {}).get("kind")})
    run.series = f"{run.method} + {d['allocation']}"
    run.headline = (f"{search['strategy']} search for {run.method}: best fitness {format_number(d['fitness'])}"
                    + (f" ({against})" if against else ""))
    if run.layers is not None:
        run.layers.target = float(d["target"])
    _uniform_note(run, "block")


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


@RUN_KINDS.register("tokens", "kenprune tokens: token pruning at inference, fidelity and speed against dense")
def tokens_view(run: Run) -> None:
    d = run.record.details
    lat, fid = d["latency"], d["fidelity"]
    per_layer = d["tokens_per_layer"]
    _rows(run.summary, {
        "schedule (layer: cumulative keep)": d["schedule_text"],
        "tokens per layer (mean per input)": " -> ".join(f"{x['tokens_out']:.1f}" for x in per_layer)
        + f" (input {per_layer[0]['dense']:.1f})" if per_layer else None,
        "FLOPs vs dense (from the real token counts)": f"{d['flops']['ratio']:.3f}x",
        "fidelity": ", ".join(f"{k} {format_number(v)}" for k, v in fid.items() if isinstance(v, (int, float))),
        "WPR": f"start {d['options']['wpr_start']}, iterations per layer {d['options']['iterations']}, VHF "
               f"{d['options']['vhf']}, similarity share {d['options']['similarity_share']}"
        if d["method"] == "zero-tprune" else None,
    })
    for name in ("dense", "pruned"):
        run.summary[f"latency {name} (batch {lat['batch']}, {lat['threads']} threads)"] = (
            _spread(lat[name]["seconds_all"], "s")[2] + f", p90 {lat[name]['p90']:.3g} s")
    run.summary["speed-up (median dense / median pruned)"] = (
        f"{lat['speedup']:.2f}x; pruning decisions {lat['overhead_median']:.3g} s of the pruned median; "
        f"load average {lat['loadavg']['before'][0]:.1f} (shared machine: read the ratio, not the seconds)")
    spread = max(_spread(lat[n]["seconds_all"], "s")[1] for n in ("dense", "pruned"))
    if abs(lat["dense"]["median"] - lat["pruned"]["median"]) < spread:
        run.warnings.append(f"latency: the dense/pruned difference is smaller than the spread of the repeats "
                            f"({spread:.3g} s); the speed-up {lat['speedup']:.2f}x is not a result")
    for i, example in enumerate(d.get("examples") or []):
        tokens, last = example["tokens"], set(example["survivors"][-1]) if example["survivors"] else set()
        run.summary[f"example {i + 1} after the last layer (_ = pruned)"] = " ".join(
            t if p in last else "_" for p, t in enumerate(tokens))
    run.series = f"{run.method} (tokens)"
    run.headline = (f"{run.method}, schedule {d['schedule_text']}, {_quality_text(run)}, FLOPs "
                    f"{d['flops']['ratio']:.2f}x, speed-up {lat['speedup']:.2f}x")


@RUN_KINDS.register("stats", "kenprune stats export|merge: federated calibration statistics (sums and counts)")
def stats_view(run: Run) -> None:
    from ..federated.report import federated_rows

    d = run.record.details
    _rows(run.summary, {"operation": d["operation"], "statistic": f"{d['statistic']} for {run.method}",
                        "blocks": d["blocks"]})
    _rows(run.summary, federated_rows({**d, "executor": d["operation"], "workers": None}))
    run.headline = f"{d['operation']}: {d['statistic']} statistics, {len(d['clients'])} client(s), {d['tokens']} tokens"


@RUN_KINDS.register("phase-map", "kenprune phase-map: prunability over temperature x density, regimes named")
def phase_map_view(run: Run) -> None:
    from collections import Counter

    d = run.record.details
    counts = Counter(c["regime"] for c in d["cells"])
    _rows(run.summary, {
        "temperature-like axis": f"{d['axis']}: {', '.join(map(str, d['temperatures']))}",
        "densities": ", ".join(f"{x:g}" for x in d["densities"]),
        "held-out set": f"{d['held_out']['data']}, {d['held_out']['examples']} examples of {d['held_out']['seqlen']} "
                        f"tokens ({d['quality_metric']})",
        "recovery": f"{d['recover_steps']} masked steps" if d["recover_steps"] else "none",
        "dense parent": ", ".join(f"{t}: {format_number(q)}" for t, q in
                                  dict((c["temperature"], c["dense_quality"]) for c in d["cells"]).items()),
        "barrier": f"{d['barrier_between']}; {d['alphas']} points",
        "similarity": d["similarity"],
        "regimes": "; ".join(f"{k} ({counts.get(k, 0)} cells): {v}" for k, v in d["regimes"].items()),
        "thresholds": f"barrier > {d['thresholds']['barrier']:g} nats: I; CKA >= {d['thresholds']['similarity']:g}: "
                      f"II-B",
    })
    run.headline = (f"{run.method} phase map, {len(d['temperatures'])} x {len(d['densities'])} cells: "
                    + ", ".join(f"{k} {counts.get(k, 0)}" for k in d["regimes"]))


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
