"""The zero-shot part of a run's report: per-task accuracy of every model in the record (dense, pruned, ...)
with 95 % intervals and chance, as a table and a grouped bar chart; the protocol that produced them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# kenprune.evaluate's names for these entries, repeated so a report never imports torch (a test checks them)
TASK_METRIC, ZERO_SHOT = "task accuracy", "zero-shot"

ORDER = {"reference": 0, "before": 1, "after": 2}


@dataclass
class TaskView:
    tasks: list[str] = field(default_factory=list)  # lm-eval task names, then "mean"
    series: dict[str, list[tuple[float, float, float] | None]] = field(default_factory=dict)  # model -> per task
    chance: list[float | None] = field(default_factory=list)
    table: dict[str, str] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)


def _interval(q) -> tuple[float, float, float]:
    lo, hi = q.protocol.get("ci95") or q.protocol.get("mean_ci95")
    return (float(q.value), float(lo), float(hi))


def task_view(record) -> TaskView | None:
    """None when the record holds no zero-shot entries."""
    entries = [q for q in record.quality if q.metric in (TASK_METRIC, ZERO_SHOT)]
    if not entries:
        return None
    view = TaskView()
    models = list(dict.fromkeys(q.model for q in sorted(entries, key=lambda q: ORDER[q.role])))
    tasks = list(dict.fromkeys(q.data for q in entries if q.metric == TASK_METRIC))
    means = list(dict.fromkeys(q.data for q in entries if q.metric == ZERO_SHOT))
    for name, metric in [(t, TASK_METRIC) for t in tasks] + [(m, ZERO_SHOT) for m in means]:
        found = {q.model: q for q in entries if q.metric == metric and q.data == name}
        first = next(iter(found.values()))
        p = first.protocol
        label = name.removeprefix("kenprune_") if metric == TASK_METRIC else "mean"
        view.tasks.append(label)
        view.chance.append(p.get("chance") if metric == TASK_METRIC else None)
        for model in models:
            view.series.setdefault(model, []).append(_interval(found[model]) if model in found else None)
        cells = "; ".join(f"{m} {v:.3f} [{lo:.3f}, {hi:.3f}]" for m, (v, lo, hi) in
                          ((m, _interval(found[m])) for m in models if m in found))
        if metric == TASK_METRIC:
            chance = f", chance {p['chance']:g}" if p.get("chance") is not None else ""
            key = f"{name} ({p['metric']}, {p['n']} of {p['n_available']} items{chance})"
        else:
            key = f"mean of {len(tasks)} tasks ({name})"
        view.table[key] = cells
    p = next(q for q in entries if q.metric == ZERO_SHOT).protocol if means else entries[0].protocol
    view.protocol = {k: p.get(k) for k in ("evaluator", "lm_eval_version", "num_fewshot", "limit", "batch_size",
                                           "dtype", "device", "offline", "selection", "task_dir", "interval",
                                           "path")}
    if view.protocol["path"] is None:  # records written before the streamed path existed
        del view.protocol["path"]
    for q in entries:
        if q.metric == TASK_METRIC and q.protocol.get("data_sha256"):
            view.protocol[f"{q.data} data sha256"] = q.protocol["data_sha256"]
            view.protocol[f"{q.data} yaml sha256"] = q.protocol.get("yaml_sha256")
        elif q.metric == TASK_METRIC and q.protocol.get("yaml_sha256"):
            view.protocol[f"{q.data} yaml sha256"] = q.protocol["yaml_sha256"]
    return view
