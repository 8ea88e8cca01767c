"""DSA's evolutionary search over allocation functions, made resumable and parallel.

Each generation proposes new, valid, never-seen functions (crossover by stage and mutation
by operation of the fittest, or plain random functions for the baseline), evaluates them in
one batch on an executor, keeps the best `population`, and checkpoints atomically. Fitness
is a loss (lower is better, e.g. validation perplexity). Everything random comes from one
seeded RNG whose state is checkpointed, so a killed and resumed search ends exactly where an
uninterrupted one does.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from random import Random
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..errors import KenpruneError, describe
from ..fileio import write_json
from .dsa import Function, crossover, mutate, parse, random_function, validate
from .executors import Executor
from .mapping import check_lambda, check_target, scores_to_ratios

STRATEGIES = ("evolution", "random")
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class SearchConfig:
    strategy: str = "evolution"
    budget: int = 100  # model evaluations (rejected functions cost none)
    seconds: float | None = None  # stop starting generations after this much search time
    population: int = 10
    children: int = 4  # evaluations per generation after the first (one parallel batch)
    parents: int = 4  # the fittest this many breed
    p_crossover: float = 0.5
    p_mutation: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise KenpruneError(f"unknown search strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
        if self.budget < 1:
            raise KenpruneError(f"--budget must be at least 1 evaluation, got {self.budget}")
        if self.seconds is not None and self.seconds <= 0:
            raise KenpruneError(f"--seconds must be positive, got {self.seconds}")
        if min(self.population, self.children, self.parents) < 1:
            raise KenpruneError("population, children and parents must be at least 1")

    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (budgets may grow on resume)."""
        return {k: v for k, v in asdict(self).items() if k not in ("budget", "seconds")}


class AllocationSpace:
    """Turns a function into per-layer ratios (or a rejection reason) on fixed dense-pass scores."""

    def __init__(self, block_scores: Sequence[torch.Tensor], block_sizes: Sequence[int], target: float,
                 lam: float = 0.08):
        self.scores, self.sizes = list(block_scores), list(block_sizes)
        self.target = check_target(target)
        self.lam = check_lambda(lam, self.target)

    def ratios(self, fn: Function) -> tuple[list[float] | None, str | None]:
        values, reason = validate(fn, self.scores)
        if reason is not None:
            return None, reason
        return scores_to_ratios(values, self.sizes, self.target, self.lam, higher="sparser").tolist(), None


@dataclass
class SearchState:
    rng: list
    generation: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    population: list[str] = field(default_factory=list)  # best first
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)  # function -> {"fitness"}, {"rejected"}, {"same_as"}
    allocations: dict[str, str] = field(default_factory=dict)  # rounded ratios -> the function evaluated for them
    history: list[dict[str, Any]] = field(default_factory=list)

    def fitness(self, fn: str) -> float:
        entry = self.cache[fn]
        return self.fitness(entry["same_as"]) if "same_as" in entry else entry.get("fitness", math.inf)


@dataclass
class SearchResult:
    best: str
    fitness: float
    ratios: list[float]
    strategy: str
    evaluations: int
    generations: int
    seconds: float
    rejected: int
    duplicates: int
    history: list[dict[str, Any]]
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(space: AllocationSpace, executor: Executor, config: SearchConfig, *,
           checkpoint: str | Path | None = None, fingerprint: dict[str, Any] | None = None,
           progress: bool = True, on_generation: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume from `checkpoint`) a search; executor payloads are per-block ratio lists."""
    identity = {"config": config.identity(), "target": space.target, "lam": space.lam, **(fingerprint or {})}
    state = _load(Path(checkpoint), identity) if checkpoint and Path(checkpoint).exists() else None
    rng = Random(config.seed)
    if state is None:
        state = SearchState(rng=_rng_state(rng))
    rng.setstate(_rng_tuple(state.rng))
    bar = tqdm(total=config.budget, initial=min(state.evaluations, config.budget), unit="eval",
               desc=f"search ({config.strategy})", disable=not progress)
    while state.evaluations < config.budget and (config.seconds is None or state.seconds < config.seconds):
        start = time.perf_counter()
        want = config.population if not state.population else config.children
        proposals = _propose(state, space, config, rng, min(want, config.budget - state.evaluations))
        if not proposals:
            break  # the space offers nothing new
        fitnesses = executor.map([ratios for _, ratios in proposals])
        for (fn, _), fit in zip(proposals, fitnesses):
            state.cache[fn] = {"fitness": fit if math.isfinite(fit) else math.inf}
        ranked = sorted(set(state.population) | {fn for fn, _ in proposals}, key=lambda f: (state.fitness(f), f))
        state.population = ranked[:config.population]
        state.generation += 1
        state.evaluations += len(proposals)
        state.seconds += time.perf_counter() - start
        best = state.population[0]
        entry = {"generation": state.generation, "evaluations": state.evaluations, "best": best,
                 "best_fitness": state.fitness(best), "batch_best": min(fitnesses), "seconds": state.seconds}
        state.history.append(entry)
        state.rng = _rng_state(rng)
        if checkpoint:
            _save(Path(checkpoint), identity, state)
        bar.update(len(proposals))
        bar.set_postfix(gen=state.generation, best=f"{entry['best_fitness']:.3f}")
        if on_generation:
            on_generation(entry)
    bar.close()
    if not state.population:
        raise KenpruneError("the search found no valid allocation function; check the scores and lambda")
    best = state.population[0]
    ratios, _ = space.ratios(parse(best))
    return SearchResult(best=best, fitness=state.fitness(best), ratios=ratios, strategy=config.strategy,
                        evaluations=state.evaluations, generations=state.generation, seconds=state.seconds,
                        rejected=sum("rejected" in v for v in state.cache.values()),
                        duplicates=sum("same_as" in v for v in state.cache.values()), history=state.history,
                        top=[(f, state.fitness(f)) for f in state.population[:5]])


def _propose(state: SearchState, space: AllocationSpace, config: SearchConfig, rng: Random,
             count: int) -> list[tuple[str, list[float]]]:
    """Up to `count` new valid functions with their ratios; rejected ones are cached with the reason."""
    out: list[tuple[str, list[float]]] = []
    for _ in range(200 * count):
        if len(out) == count:
            break
        fn = _breed(state, config, rng) if config.strategy == "evolution" and state.population else random_function(rng)
        key = str(fn)
        if key in state.cache or any(key == k for k, _ in out):
            continue
        ratios, reason = space.ratios(fn)
        if reason is not None:
            state.cache[key] = {"rejected": reason}
            continue
        twin = state.allocations.get(_allocation_key(ratios))
        if twin is not None:  # e.g. a linear post-process: the same ratios, so the same fitness, for free
            state.cache[key] = {"same_as": twin}
            continue
        state.allocations[_allocation_key(ratios)] = key
        out.append((key, ratios))
    return out


def _allocation_key(ratios: Sequence[float]) -> str:
    return ",".join(f"{r:.9f}" for r in ratios)


def _breed(state: SearchState, config: SearchConfig, rng: Random) -> Function:
    """A child of the fittest: crossover by stage of two parents and/or mutation of one operation."""
    pool = [parse(f) for f in state.population[:config.parents]]
    child = rng.choice(pool)
    if len(pool) > 1 and rng.random() < config.p_crossover:
        a, b = rng.sample(pool, 2)
        child = crossover(a, b, rng)
    if rng.random() < config.p_mutation or str(child) in state.cache:
        child = mutate(child, rng)
    return child


def _rng_state(rng: Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_tuple(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def _save(path: Path, identity: dict[str, Any], state: SearchState) -> None:
    write_json(path, {"version": CHECKPOINT_VERSION, "identity": identity, "state": asdict(state)}, strict=False)


def check_checkpoint(path: str | Path) -> None:
    """Fail at once (before any expensive setup) if a checkpoint exists but cannot be resumed."""
    if Path(path).exists():
        _read(Path(path))


def _read(path: Path) -> tuple[dict[str, Any], SearchState]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {CHECKPOINT_VERSION}")
        state = SearchState(**data["state"])
        Random().setstate(_rng_tuple(state.rng))
        if not isinstance(data["identity"], dict):
            raise ValueError("no identity")
        if not (isinstance(state.cache, dict) and isinstance(state.population, list)
                and isinstance(state.allocations, dict) and isinstance(state.history, list)):
            raise ValueError("malformed state")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                   for n in (state.generation, state.evaluations)):
            raise ValueError("malformed generation or evaluation count")
        if not isinstance(state.seconds, (int, float)) or not math.isfinite(state.seconds):
            raise ValueError("malformed search time")
        if not all(isinstance(v, dict) for v in state.cache.values()):
            raise ValueError("malformed fitness cache")
        for fn in state.population:
            if not isinstance(fn, str) or fn not in state.cache:
                raise ValueError(f"population member {str(fn)[:40]!r} has no cached fitness")
            parse(fn)
            state.fitness(fn)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError,
            KenpruneError) as exc:
        raise KenpruneError(f"checkpoint {path} is corrupt ({describe(exc, 80)}); delete it to start "
                            f"over, or choose another --out") from None
    return data, state


def _load(path: Path, identity: dict[str, Any]) -> SearchState:
    data, state = _read(path)
    if _normalise(data["identity"]) != _normalise(identity):
        raise KenpruneError(f"checkpoint {path} belongs to a different search (model, method, sparsity, seed or "
                            f"settings differ); use another --out or delete the checkpoint")
    return state


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


__all__ = ["AllocationSpace", "SearchConfig", "SearchResult", "SearchState", "STRATEGIES", "check_checkpoint", "search"]
