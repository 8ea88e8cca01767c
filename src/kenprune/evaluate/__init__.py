"""One evaluation entry point for every command: `evaluate(model, spec) -> Quality`.

Evaluators are registered by name (perplexity for causal LMs, accuracy for sequence classifiers, zero-shot
task accuracy through lm-evaluation-harness for causal LMs, asked for by name or with `evaluate_tasks`);
`evaluate` picks the one for the model's task unless the spec names a metric. The figure comes back
as a `record.Quality` with its full protocol, ready for the run record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import KenpruneError
from ..registry import Registry
from .classifier import AccuracyResult, accuracy
from .language_model import PerplexityResult, context_length, make_windows, perplexity, resolve_bos, window_nll
from .protocol import PerplexityProtocol

if TYPE_CHECKING:
    from ..models.loading import LoadedModel
    from ..record import Quality
    from ..settings import Evaluation


@dataclass(frozen=True)
class Evaluator:
    """A quality measure: the model tasks it applies to and how to run it under an Evaluation spec."""

    metric: str
    tasks: tuple[str, ...]
    run: Callable[..., tuple[float, dict, float]]  # (loaded, spec, progress) -> (value, protocol, seconds)


def _perplexity(loaded: "LoadedModel", spec: "Evaluation", progress: bool) -> tuple[float, dict, float]:
    from ..precision import resolve_dtype

    device = next(loaded.model.parameters()).device
    protocol = PerplexityProtocol(data=spec.data, seqlen=spec.seqlen, max_windows=spec.windows, bos=spec.bos,
                                  dtype=resolve_dtype(spec.dtype, device).dtype)
    result = perplexity(loaded, protocol, batch_size=spec.batch_size, progress=progress, identify=False).to_dict()
    return result["perplexity"], result["protocol"], result["seconds"]


def _accuracy(loaded: "LoadedModel", spec: "Evaluation", progress: bool) -> tuple[float, dict, float]:
    from ..precision import compute_dtype, resolve_dtype

    device = next(loaded.model.parameters()).device
    dtype = resolve_dtype(spec.dtype, device).dtype
    with compute_dtype(loaded.model, dtype, device):
        result = accuracy(loaded, spec.data, batch_size=max(spec.batch_size, 16), progress=progress,
                          identify=False).to_dict()
    return result["accuracy"], {**result["protocol"], "correct": result["correct"], "total": result["total"],
                                "dtype": dtype}, result["seconds"]


ZERO_SHOT = "zero-shot"  # the mean accuracy over tasks (lm-evaluation-harness); one entry per task beside it
TASK_METRIC = "task accuracy"


def task_spec(spec: "Evaluation") -> str | None:
    """The tasks an Evaluation asks for: its `tasks`, or a `tasks:SPEC` data reference."""
    if spec.tasks:
        return spec.tasks
    return spec.data[len("tasks:"):] if spec.data and spec.data.startswith("tasks:") else None


def _zero_shot(loaded: "LoadedModel", spec: "Evaluation", progress: bool) -> tuple[float, dict, float]:
    from .zero_shot import run_tasks, select_tasks, summarise

    selection = select_tasks(task_spec(spec), spec.task_dir)
    result = run_tasks(loaded, selection, limit=spec.task_limit, batch_size=spec.task_batch_size, progress=progress)
    mean = summarise(result["tasks"])
    protocol = {"data": f"tasks:{selection.spec}", **result["protocol"], "mean_ci95": mean["ci95"],
                "tasks": result["tasks"]}
    return mean["value"], protocol, sum(t["seconds"] for t in result["tasks"])


EVALUATORS: Registry[Evaluator] = Registry("evaluator")
EVALUATORS.add("perplexity", Evaluator("perplexity", ("causal-lm",), _perplexity),
               "exp(mean NLL) over non-overlapping windows of a split (the pinned protocol)")
EVALUATORS.add("accuracy", Evaluator("accuracy", ("sequence-classification",), _accuracy),
               "share of a labelled split classified right")
EVALUATORS.add(ZERO_SHOT, Evaluator(ZERO_SHOT, ("causal-lm",), _zero_shot),
               "mean zero-shot accuracy over lm-evaluation-harness tasks (kenprune's offline tasks, stock or yours)")


def evaluator_for(task: str, metric: str | None = None) -> Evaluator:
    """The evaluator a model of `task` is measured with (or the named one, if it applies to the task)."""
    if metric is not None:
        chosen = EVALUATORS.get(metric)
        if task not in chosen.tasks:
            raise KenpruneError(f"{metric} needs {_a(' or '.join(chosen.tasks))} model, not {_a(task)} model")
        return chosen
    for entry in EVALUATORS.entries():
        if task in entry.value.tasks:
            return entry.value
    raise KenpruneError(f"no evaluator for {_a(task)} model; fine-tune it into a classifier first "
                        f"(e.g. kenprune finetune --model minilm-l6 --data pang-lee --out ft/) "
                        f"or give a causal LM")


def _a(noun: str) -> str:
    """`noun` with its indefinite article: "an encoder", "a causal-lm"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def evaluate(loaded: "LoadedModel", spec: "Evaluation", *, role: str = "after", label: str | None = None,
             metric: str | None = None, progress: bool = True) -> "Quality":
    """The quality of `loaded` on `spec.data` under `spec`'s protocol, as a run-record entry."""
    from ..record import Quality

    chosen = evaluator_for(loaded.task, metric)
    if not spec.data and not (chosen.metric == ZERO_SHOT and spec.tasks_enabled):
        raise KenpruneError("no evaluation data given")
    value, protocol, seconds = chosen.run(loaded, spec, progress)
    try:
        finite = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise KenpruneError(f"{chosen.metric} of {label or loaded.name} on {spec.data} is not finite ({value!r}); "
                            f"the weights may be corrupt")
    return Quality(chosen.metric, value, protocol.get("data") or spec.data, role, label or loaded.name, protocol,
                   seconds)


def evaluate_tasks(loaded: "LoadedModel", spec: "Evaluation", *, role: str = "after", label: str | None = None,
                   progress: bool = True) -> list["Quality"]:
    """Zero-shot accuracy on spec's tasks: the mean entry (metric zero-shot) and one entry per task (metric
    "task accuracy", data = the lm-eval task name, protocol with n, correct, 95 % interval, chance, file hashes).
    Empty when spec asks for no tasks."""
    from ..record import Quality

    if not spec.tasks_enabled:
        return []
    mean = evaluate(loaded, spec, role=role, label=label, metric=ZERO_SHOT, progress=progress)
    shared = {k: v for k, v in mean.protocol.items() if k not in ("tasks", "data", "mean_ci95")}
    return [mean] + [Quality(TASK_METRIC, task["value"], task["task"], role, mean.model, {**shared, **task},
                             task["seconds"]) for task in mean.protocol["tasks"]]


__all__ = ["AccuracyResult", "EVALUATORS", "Evaluator", "TASK_METRIC", "ZERO_SHOT", "evaluate_tasks", "PerplexityProtocol", "PerplexityResult", "accuracy",
           "context_length", "evaluate", "evaluator_for", "make_windows", "perplexity", "resolve_bos", "window_nll"]
