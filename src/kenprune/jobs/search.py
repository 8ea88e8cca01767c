"""`kenprune search` as a Python function: find a DSA allocation function for a model and target."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .. import provenance
from ..fileio import write_json

CHECKPOINT, BEST, RESULT = "checkpoint.json", "best.json", "search.json"


def search_allocation(model: str = "smollm2-135m", method: str = "wanda", sparsity: float = 0.7, *,
                      budget: int = 100, seconds: float | None = None, workers: int | None = None,
                      ray_address: str | None = None, seed: int = 0, out: str | Path = "search-out",
                      strategy: str = "evolution", lam: float = 0.08, population: int = 10, children: int = 4,
                      proxy: str = "oneshot", calib_samples: int = 16, calib_seqlen: int = 256,
                      eval_data: str = "wiki:valid", eval_windows: int = 4, eval_seqlen: int = 256,
                      progress: bool = True) -> dict[str, Any]:
    """Evolutionary (or random) search for a DSA function; resumes from `out`/checkpoint.json.

    Writes `out`/best.json (readable by `--allocation`) and `out`/search.json; returns the latter.
    The result does not depend on `workers`: batches are fixed by `children`, the RNG by `seed`.
    """
    from ..methods import METHODS
    from ..allocate.executors import default_workers, make_executor
    from ..allocate.fitness import PerplexityFitness, prepared
    from ..allocate.layers import block_scores, block_sizes
    from ..allocate.mapping import check_lambda, check_target
    from ..allocate.model import model_layers
    from ..allocate.search import AllocationSpace, SearchConfig, check_checkpoint, search

    METHODS.get(method)
    target = check_target(sparsity)
    check_lambda(lam, target)
    config = SearchConfig(strategy=strategy, budget=budget, seconds=seconds, population=population,
                          children=children, seed=seed)
    fitness = PerplexityFitness(model=model, method=method, proxy=proxy, calib_samples=calib_samples,
                                calib_seqlen=calib_seqlen, data=eval_data, windows=eval_windows,
                                seqlen=eval_seqlen, seed=seed)
    workers = default_workers() if workers is None else workers
    out = Path(out)
    check_checkpoint(out / CHECKPOINT)
    executor = make_executor(fitness, workers, ray_address)  # first: a bad Ray address fails at once
    try:
        start = time.perf_counter()
        local = prepared(fitness)  # the dense scoring pass; also the in-process evaluator's model
        layers = model_layers(local.model, local.scores(method, progress))
        space = AllocationSpace(block_scores(layers), block_sizes(layers), target, lam)
        setup_seconds = time.perf_counter() - start
        fingerprint = {"fitness": fitness.to_dict(), "model_sha256": local.loaded.identity().get("weights_sha256")}
        result = search(space, executor, config, checkpoint=out / CHECKPOINT, fingerprint=fingerprint,
                        progress=progress, on_generation=_printer(budget) if progress else None)
    finally:
        executor.close()
    record = {"model": model, "method": method, "target": target, "lambda": lam,
              "allocation": f"dsa:{result.best}", "function": result.best, "fitness": result.fitness,
              "fitness_protocol": fitness.to_dict(), "block_ratios": result.ratios}
    write_json(out / BEST, record)
    summary = {**record, "search": {**config.identity(), "budget": budget, "seconds": seconds},
               "executor": {"kind": executor.name, "workers": executor.workers, "ray_address": ray_address},
               "setup_seconds": setup_seconds, "result": result.to_dict(), **provenance.record()}
    write_json(out / RESULT, summary)
    return summary


def _printer(budget: int):
    def report(entry: dict[str, Any]) -> None:
        print(f"generation {entry['generation']}: {entry['evaluations']}/{budget} evaluations, best "
              f"{entry['best_fitness']:.3f} {entry['best']}", file=sys.stderr)

    return report
