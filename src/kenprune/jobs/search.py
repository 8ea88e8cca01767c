"""`kenprune search`: find a DSA allocation function for a model and target; resumable, Ray-parallel.

The search writes into its output folder as it goes (checkpoint.json after every generation), so a
killed search resumes; best.json (readable by `prune --allocation`) and run.json come at the end.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..fileio import write_json
from ..measure import StageTimer
from ..record import FileEntry, Layer, Quality, RunRecord, write
from ..settings import (DEFAULT_MODEL, SEARCH_CALIBRATION, SEARCH_EVALUATION, Calibration, Evaluation, Output,
                        SearchSettings, given)
from .common import check_output, finish, new_record

CHECKPOINT, BEST = "checkpoint.json", "best.json"
DEFAULT_OUT = "search-out"


def run(model: str = DEFAULT_MODEL, settings: SearchSettings = SearchSettings(), *,
        calibration: Calibration = SEARCH_CALIBRATION, evaluation: Evaluation = SEARCH_EVALUATION,
        output: Output = Output(Path(DEFAULT_OUT)), progress: bool = True) -> RunRecord:
    """Evolutionary (or random) search for a DSA function; resumes from OUT/checkpoint.json.

    Fitness: perplexity on `evaluation` (never a test split) of the model pruned with `calibration`.
    The result does not depend on settings.workers: batches are fixed by `children`, the RNG by `seed`.
    """
    from .. import provenance
    from ..allocate.executors import default_workers, make_executor
    from ..allocate.fitness import PerplexityFitness, prepared
    from ..allocate.layers import block_scores, block_sizes
    from ..allocate.mapping import check_target
    from ..allocate.model import model_layers
    from ..allocate.search import AllocationSpace, SearchConfig, check_checkpoint, search
    from ..precision import resolve_dtype

    settings.check()
    calibration.check()
    evaluation.check()
    target = check_target(settings.sparsity)
    config = SearchConfig(strategy=settings.strategy, budget=settings.budget, seconds=settings.seconds,
                          population=settings.population, children=settings.children, seed=calibration.seed)
    fitness = PerplexityFitness(model=model, method=settings.method, proxy=settings.proxy, calib_data=calibration.data,
                                calib_samples=calibration.samples, calib_seqlen=calibration.seqlen,
                                data=evaluation.data, windows=evaluation.windows, seqlen=evaluation.seqlen,
                                seed=calibration.seed, dtype=(precision := resolve_dtype(evaluation.dtype)).dtype)
    workers = default_workers() if settings.workers is None else settings.workers
    out = Path(output.folder or DEFAULT_OUT)
    check_output(Output(out, output.overwrite), [model], resumable=CHECKPOINT)
    if output.overwrite:  # start afresh: the folder is a search kenprune wrote (checked above)
        for name in (CHECKPOINT, BEST, "run.json"):
            (out / name).unlink(missing_ok=True)
    check_checkpoint(out / CHECKPOINT)
    timer = StageTimer()
    executor = make_executor(fitness, workers, settings.ray_address)  # first: a bad Ray address fails at once
    try:
        with timer.stage("setup"):
            local = prepared(fitness)  # the dense scoring pass; also the in-process evaluator's model
            layers = model_layers(local.model, local.scores(settings.method, progress))
            space = AllocationSpace(block_scores(layers), block_sizes(layers), target, settings.lam)
        identity = local.loaded.identity()
        fingerprint = {"fitness": fitness.to_dict(), "model_sha256": identity.get("weights_sha256")}
        with timer.stage("search"):
            result = search(space, executor, config, checkpoint=out / CHECKPOINT, fingerprint=fingerprint,
                            progress=progress, on_generation=_printer(settings.budget) if progress else None)
        with timer.stage("baselines"):  # what the search is for: beating these on the same proxy
            baselines = dict(zip(("uniform", "owl"), executor.map(baseline_ratios(layers, target, settings.lam,
                                                                                   len(result.ratios)))))
        final_check = None
        if precision.dtype != "float32":  # the candidates ran in the fast dtype; the winner is checked in fp32
            with timer.stage("final_check"):
                final_check = {"dtype": "float32", "fitness": fitness.evaluate(result.ratios, "float32"),
                               "search_dtype": precision.dtype, "search_fitness": result.fitness}
    finally:
        executor.close()
    task_quality = []
    if evaluation.tasks_enabled:  # the final check: the model pruned with the best allocation, on the tasks
        with timer.stage("tasks"):
            task_quality = _final_tasks(local, result.ratios, settings.method, evaluation, progress)
    best = {"model": model, "method": settings.method, "target": target, "lambda": settings.lam,
            "allocation": f"dsa:{result.best}", "function": result.best, "fitness": result.fitness,
            "fitness_protocol": fitness.to_dict(), "block_ratios": result.ratios}
    write_json(out / BEST, best)
    record = new_record("search", identity, settings.method,
                        given(model=model, search=settings, calibration=calibration, evaluation=evaluation),
                        {"search": {**settings.to_dict(), "workers": workers}, "calibration": calibration.to_dict(),
                         "evaluation": evaluation.to_dict()})
    record.layer_quantity = "sparsity"
    record.layers = [Layer(f"block {i}", [], ratio, block=i, allocated=ratio) for i, ratio in enumerate(result.ratios)]
    record.quality = [Quality("perplexity", result.fitness, evaluation.data, "after", "searched allocation",
                              fitness.to_dict())]
    if final_check is not None:
        record.quality.append(Quality("perplexity", final_check["fitness"], evaluation.data, "reference",
                                      "searched allocation, float32 check", {**fitness.to_dict(), "dtype": "float32"}))
    record.quality += task_quality
    record.details.update({
        "function": result.best, "allocation": f"dsa:{result.best}", "fitness": result.fitness, "target": target,
        "sparsity": target, "lambda": settings.lam, "fitness_protocol": fitness.to_dict(),
        "search": {**config.identity(), "budget": settings.budget, "seconds": settings.seconds},
        "baselines": baselines, "precision": {**precision.to_dict(), "statistics": "float32"},
        "final_check": final_check,
        "executor": {"kind": executor.name, "workers": executor.workers, "ray_address": settings.ray_address},
        "result": result.to_dict()})
    record.files = [FileEntry(BEST, "json", (out / BEST).stat().st_size, "allocation")]
    if (out / CHECKPOINT).exists():
        record.files.append(FileEntry(CHECKPOINT, "json", (out / CHECKPOINT).stat().st_size, "checkpoint"))
    record.provenance = provenance.record()
    finish(record, timer)
    write(record, out)
    return record


def _final_tasks(local: Any, ratios: list[float], method: str, evaluation: Evaluation,
                 progress: bool) -> list[Quality]:
    """Zero-shot tasks on the dense model (unless evaluation.before is False) and on a copy pruned with the best
    block ratios by the sequential engine (the search's calibration inputs)."""
    from ..engine.elementwise import pruned_copy
    from ..evaluate import evaluate_tasks
    from ..models.loading import LoadedModel

    dense = local.loaded
    out = evaluate_tasks(dense, evaluation, role="before", label="dense", progress=progress) \
        if evaluation.before else []
    model, _ = pruned_copy(local.model, dict(enumerate(ratios)), local.inputs, method=method, progress=progress)
    pruned = LoadedModel(model, dense.tokenizer, dense.name, dense.source, dense.task, dense.bos)
    return out + evaluate_tasks(pruned, evaluation, role="after", label="searched allocation", progress=progress)


def baseline_ratios(layers: list, target: float, lam: float, blocks: int) -> list[list[float]]:
    """Per-block ratios of the uniform and OWL allocations (OWL gives every Linear of a block one ratio)."""
    from ..allocate.owl import owl

    per_layer = owl(layers, target, lam=lam)
    owl_blocks = {layer.block: per_layer[layer.name] for layer in layers}
    return [[target] * blocks, [owl_blocks[i] for i in range(blocks)]]


def _printer(budget: int):
    def report(entry: dict[str, Any]) -> None:
        print(f"generation {entry['generation']}: {entry['evaluations']}/{budget} evaluations, best "
              f"{entry['best_fitness']:.3f} {entry['best']}", file=sys.stderr)

    return report


def search_allocation(model: str = DEFAULT_MODEL, *, calibration: Calibration = SEARCH_CALIBRATION,
                      evaluation: Evaluation = SEARCH_EVALUATION, out: str | Path = DEFAULT_OUT,
                      overwrite: bool = False, progress: bool = True, **options: Any) -> RunRecord:
    """`run` with SearchSettings given as keywords (method, sparsity, budget, strategy, workers, ...)."""
    return run(model, SearchSettings(**options), calibration=calibration, evaluation=evaluation,
               output=Output(Path(out), overwrite), progress=progress)
