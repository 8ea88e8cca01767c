"""Zero-shot task accuracy with the real lm-evaluation-harness, driven on the model already in memory.

`select_tasks` resolves a task list (`default`, `all`, local names, `stock:NAME` for lm-eval's own tasks,
names from a user's `--task-dir`) with one-line errors before any model loads. `run_tasks` wraps the
loaded model and tokenizer in lm-eval's HFLM, runs each task zero-shot (few-shot 0) through
`lm_eval.simple_evaluate` with a TaskManager that indexes only kenprune's task folder and the user's
(lm-eval's 14k stock YAMLs are indexed only when a stock task is asked for), offline unless a stock task
is asked for, and returns per-task accuracy with a binomial 95 % interval and the protocol. A streamed model
(`LazyModel.loaded()`, `kenprune prune --stream on`) is scored by `streamed_lm.StreamedLM` instead: HFLM's
requests, every one passing block 0, then block 1, ...; the protocol says which path ran (`path`) and each
task entry what the streamed pass held (`streamed`).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import KenpruneError
from .intervals import Z95, wilson
from .tasks import DEFAULT_SUITE, TASKS, ensure_tasks, local_name, task_files, task_name, tasks_folder

STOCK = "stock:"
LM_EVAL = "lm-eval"  # the distribution kenprune pins (pyproject extra `tasks`)
_TASK_KEY = re.compile(r"^task:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)


@dataclass(frozen=True)
class TaskSelection:
    """What to run: kenprune's local tasks (bare names), the user's task names, lm-eval's stock names."""

    spec: str
    local: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    stock: tuple[str, ...] = ()
    task_dir: str | None = None
    user_files: dict = field(default_factory=dict)  # user task name -> its YAML file

    @property
    def names(self) -> list[str]:
        """The lm-eval task names, in order."""
        return [task_name(n) for n in self.local] + list(self.user) + list(self.stock)


def lm_eval_version() -> str | None:
    try:
        return importlib.metadata.version(LM_EVAL)
    except importlib.metadata.PackageNotFoundError:
        return None


def require_lm_eval() -> str:
    version = lm_eval_version()
    if version is None:
        raise KenpruneError("zero-shot tasks need lm-evaluation-harness: pip install -e '.[tasks]' "
                            "(lm-eval[hf]==0.4.13)")
    return version


def user_tasks(task_dir: str | os.PathLike) -> dict[str, Path]:
    """Task names defined by the YAML files under `task_dir` (their `task:` keys) -> file."""
    folder = Path(task_dir)
    if not folder.is_dir():
        raise KenpruneError(f"--task-dir {task_dir} is not a folder" if folder.exists() else
                            f"--task-dir {task_dir} does not exist")
    found: dict[str, Path] = {}
    yamls = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not yamls:
        raise KenpruneError(f"--task-dir {task_dir} holds no task YAML (*.yaml); write lm-eval task files there "
                            f"(see lm-eval's docs/new_task_guide.md)")
    for path in yamls:
        for name in _TASK_KEY.findall(path.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(name, path)
    if not found:
        raise KenpruneError(f"--task-dir {task_dir}: none of its {len(yamls)} YAML files names a task (no 'task:' key)")
    return found


def select_tasks(spec: str | None, task_dir: str | None = None) -> TaskSelection:
    """Resolve `default`, `all`, `NAME,...`, `stock:NAME` and task-dir names; one-line errors for the rest."""
    mine = user_tasks(task_dir) if task_dir else {}
    if not spec:
        if not mine:
            raise KenpruneError("no tasks given; use --tasks default, a list of names, or --task-dir DIR")
        return TaskSelection("task-dir", user=tuple(mine), task_dir=str(task_dir), user_files=mine)
    local: list[str] = []
    user: list[str] = []
    stock: list[str] = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        if raw == "default":
            local += DEFAULT_SUITE
        elif raw == "all":
            local += TASKS.names()
        elif raw.startswith(STOCK) and raw[len(STOCK):]:
            stock.append(raw[len(STOCK):])
        elif raw in mine:
            user.append(raw)
        elif local_name(raw):
            local.append(local_name(raw))  # type: ignore[arg-type]
        else:
            where = f", the tasks in {task_dir}" if mine else ""
            raise KenpruneError(f"unknown task {raw!r}; choose default, all, one of: {', '.join(TASKS.names())}"
                                f"{where}, or stock:NAME for an lm-eval task (e.g. stock:hellaswag, needs internet "
                                f"or a local copy)")
    dedup = lambda xs: tuple(dict.fromkeys(xs))  # noqa: E731
    if not (local or user or stock):
        raise KenpruneError(f"no tasks in {spec!r}")
    return TaskSelection(spec, dedup(local), dedup(user), dedup(stock), str(task_dir) if task_dir else None,
                         {k: v for k, v in mine.items() if k in user})


def mean_interval(results: list[dict], z: float = Z95) -> tuple[float, float]:
    """Normal interval of the mean of independent task accuracies: var = sum p(1-p)/n / T^2."""
    t = len(results)
    mean = sum(r["value"] for r in results) / t
    var = sum(r["value"] * (1 - r["value"]) / max(r["n"], 1) for r in results) / (t * t)
    half = z * math.sqrt(var)
    return (max(0.0, mean - half), min(1.0, mean + half))


@contextlib.contextmanager
def _environment(offline: bool, progress: bool) -> Iterator[None]:
    """Offline switches (when no stock task is asked for), tqdm off without progress, quiet lm-eval logs,
    and the caller's random states back afterwards (simple_evaluate seeds every generator)."""
    import numpy as np
    import torch

    changes = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"} if offline else {}
    if not progress:
        changes["TQDM_DISABLE"] = "1"
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        logger.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _placed(model: Any, device: str | None) -> Iterator[str]:
    """The model in eval mode on `device` (None: CUDA when there is one, else where it is) for the block, then
    back where and as it was (train/eval mode), however the block ends."""
    import torch

    mode, home = model.training, next(model.parameters()).device
    target = torch.device(device) if device else (torch.device("cuda") if torch.cuda.is_available() and
                                                  home.type == "cpu" else home)
    model.eval()
    try:
        if target != home:
            model.to(target)
        yield str(next(model.parameters()).device)
    finally:
        if target != home:
            model.to(home)
        model.train(mode)


@contextlib.contextmanager
def _streamed_device(loaded: Any, device: str | None) -> Iterator[str]:
    """The device the blocks of a streamed model visit (the one given, else the model's own setting, else CUDA
    when there is one); the skeleton itself stays where it is (on the meta device)."""
    from ..engine.sequential import resolve_device

    yield str(resolve_device(device or getattr(loaded, "device", None)))


_MANAGERS: dict[tuple, Any] = {}


def task_manager(paths: tuple[str, ...], stock: bool):
    """An lm-eval TaskManager over `paths` (and lm-eval's own tasks when `stock`), built once per process and
    again when a task file appeared since (an earlier call may have written only some of kenprune's tasks)."""
    files = tuple(sorted(str(f) for path in paths for f in Path(path).rglob("*.yaml")))
    key = (paths, stock, files)
    if key not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[key] = TaskManager(include_path=list(paths) or None, include_defaults=stock)
    return _MANAGERS[key]


def _primary(name: str, metrics: dict) -> str:
    bare = local_name(name) if name.startswith("kenprune_") else None
    if bare:
        return TASKS.get(bare).primary
    return "acc" if "acc" in metrics else next(iter(metrics), "acc")


def run_tasks(loaded: Any, selection: TaskSelection, *, limit: int | None = None, batch_size: int = 8,
              progress: bool = True, folder: Path | None = None, device: str | None = None) -> dict[str, Any]:
    """Every selected task zero-shot on `loaded` (a LoadedModel); per-task results and the protocol.

    device None: a CUDA device when there is one (the model visits it for the tasks and goes back), else
    where the model is."""
    from ..models.loading import CAUSAL_LM

    version = require_lm_eval()
    if loaded.task != CAUSAL_LM:
        raise KenpruneError(f"zero-shot tasks need a causal LM; {loaded.name} is a {loaded.task} model")
    if loaded.tokenizer is None:
        raise KenpruneError(f"{loaded.name} has no tokenizer; zero-shot tasks score text, so give a model folder "
                            f"with its tokenizer files")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise KenpruneError(f"--limit must be >= 1, got {limit!r}")
    folder = tasks_folder() if folder is None else Path(folder)
    if selection.local:
        ensure_tasks(list(selection.local), folder)
    paths = tuple(str(p) for p in ([folder] if selection.local else []) +
                  ([Path(selection.task_dir)] if selection.task_dir else []))
    import torch

    dtype = str(next(loaded.model.parameters()).dtype).replace("torch.", "")
    results: list[dict] = []
    streamed = getattr(loaded, "lazy", None) is not None  # a LazyModel.loaded(): scored block by block
    placed = _streamed_device(loaded, device) if streamed else _placed(loaded.model, device)
    with _environment(offline=not selection.stock, progress=progress), placed as device:
        from unittest.mock import patch

        import lm_eval
        import lm_eval.evaluator
        from lm_eval.models.huggingface import HFLM

        manager = task_manager(paths, bool(selection.stock))
        tokenizer = loaded.tokenizer
        if tokenizer.pad_token is None:  # lm-eval pads batches; the EOS token is the usual pad
            tokenizer.pad_token = tokenizer.eos_token
        if streamed:
            from .streamed_lm import StreamedLM

            lm = StreamedLM(loaded, tokenizer, batch_size=batch_size, device=device, progress=progress)
        else:
            lm = HFLM(pretrained=loaded.model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)
        for name in selection.names:
            start = time.perf_counter()
            passes = len(lm.passes) if streamed else 0
            try:
                # lm-eval's own environment dump shells out to git and torch's collect_env for every task (slow,
                # and "fatal: not a git repository" on stderr); kenprune's record carries its own provenance
                with torch.no_grad(), patch.object(lm_eval.evaluator, "get_git_commit_hash", lambda: None), \
                        patch.object(lm_eval.evaluator, "add_env_info", lambda storage: None):
                    out = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=0, limit=limit,
                                                  task_manager=manager, log_samples=False, bootstrap_iters=0)
            except KenpruneError:
                raise
            except Exception as exc:  # lm-eval's own errors (a missing dataset offline, a bad YAML): one line
                text = " ".join(str(exc).split())[:300]
                hint = " (stock tasks download their data: they need internet or a --task-dir copy)" \
                    if name in selection.stock else ""
                raise KenpruneError(f"lm-eval could not run task {name}: {type(exc).__name__}: {text}{hint}") \
                    from None
            results.append(_task_result(selection, name, out, time.perf_counter() - start, folder))
            if streamed:  # what the block-by-block scoring of this task held (StreamedLM.held)
                results[-1]["streamed"] = lm.held(passes)
    return {"tasks": results, "protocol": {
        "evaluator": "lm-evaluation-harness", "lm_eval_version": version, "num_fewshot": 0, "limit": limit,
        "path": "streamed" if streamed else "in-memory",
        "batch_size": batch_size, "dtype": dtype, "device": device, "offline": not selection.stock,
        "selection": selection.spec, "task_dir": selection.task_dir, "tasks_folder": str(folder),
        "interval": "Wilson 95 % per task; normal 95 % for the mean of independent tasks"}}


def _task_result(selection: TaskSelection, name: str, out: dict, seconds: float, folder: Path) -> dict:
    result = out["results"].get(name)
    if result is None:
        raise KenpruneError(f"lm-eval returned no result for task {name}")
    metrics = {key.split(",")[0]: value for key, value in result.items()
               if "," in key and "_stderr" not in key and isinstance(value, (int, float))}
    primary = _primary(name, metrics)
    if primary not in metrics:
        raise KenpruneError(f"task {name} reports no {primary} (it has: {', '.join(metrics) or 'no metric'}); "
                            f"kenprune scores acc or acc_norm tasks")
    value = float(metrics[primary])
    if not math.isfinite(value):
        raise KenpruneError(f"task {name}: {primary} is not finite ({value!r})")
    samples = (out.get("n-samples") or {}).get(name) or {}
    n = int(samples.get("effective") or samples.get("original") or 0)
    correct = round(value * n)
    entry: dict[str, Any] = {"task": name, "metric": primary, "value": value, "metrics": metrics, "n": n,
                             "n_available": int(samples.get("original") or n), "correct": correct,
                             "ci95": list(wilson(correct, n)), "seconds": seconds}
    bare = local_name(name) if name.startswith("kenprune_") else None
    if bare:
        entry.update({"chance": TASKS.get(bare).chance, "source": TASKS.get(bare).source, **task_files(bare, folder)})
    elif name in selection.user_files:
        from .tasks import sha256_file

        entry.update({"yaml_file": str(selection.user_files[name]),
                      "yaml_sha256": sha256_file(selection.user_files[name])})
    return entry


def summarise(results: list[dict]) -> dict[str, Any]:
    """The mean of the tasks' primary accuracies with its interval."""
    mean = sum(r["value"] for r in results) / len(results)
    return {"value": mean, "ci95": list(mean_interval(results)), "tasks": len(results)}


__all__ = ["TaskSelection", "lm_eval_version", "mean_interval", "run_tasks", "select_tasks", "summarise",
           "user_tasks", "wilson"]


def summary_lines(record: Any) -> list[str]:
    """Per-task accuracy with its interval, each model side by side, and the mean: what the CLI prints."""
    from . import TASK_METRIC, ZERO_SHOT

    lines = []
    for metric in (TASK_METRIC, ZERO_SHOT):
        for data in dict.fromkeys(q.data for q in record.quality if q.metric == metric):
            entries = [q for q in record.quality if q.metric == metric and q.data == data]
            p = entries[0].protocol
            sides = ", ".join(f"{q.model} {q.value:.3f} [{(q.protocol.get('ci95') or q.protocol['mean_ci95'])[0]:.3f}, "
                              f"{(q.protocol.get('ci95') or q.protocol['mean_ci95'])[1]:.3f}]" for q in entries)
            if metric == TASK_METRIC:
                chance = f", chance {p['chance']:g}" if p.get("chance") is not None else ""
                lines.append(f"  {data} {p['metric']}: {sides}  ({p['n']} of {p['n_available']} items{chance})")
            else:
                lines.append(f"zero-shot mean accuracy: {sides}  ({data}, lm-eval {p['lm_eval_version']}, "
                             f"{p['num_fewshot']}-shot, batch {p['batch_size']}, {p['dtype']})")
    return lines[-1:] + lines[:-1] if lines else []
