"""`kenprune structured`: remove whole heads and MLP channels (LLM-Pruner), save a smaller dense model that
reloads, measure its speed against the dense model in the same run, and record it."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..measure import StageTimer, path_bytes
from ..record import FileEntry, Layer, RunRecord
from ..settings import (DEFAULT_MODEL, STRUCTURED_CALIBRATION, STRUCTURED_EVALUATION, Calibration, Evaluation,
                        Output, StructuredSettings, given)
from .common import check_output, new_record, output_folder, write_record


def _block_table(result: Any) -> list[Layer]:
    """One row per block: the fraction of its (head + MLP) widths removed, parameter-weighted."""
    rows = []
    for i, (before, after) in enumerate(zip(result.widths_before, result.widths_after)):
        units_before = before.heads + before.kv_heads * 2 + before.intermediate * 3
        units_after = after.heads + after.kv_heads * 2 + after.intermediate * 3
        rows.append(Layer(f"block {i}", [], 1 - units_after / units_before, block=i))
    return rows


def run(model: str = DEFAULT_MODEL, settings: StructuredSettings = StructuredSettings(), *,
        calibration: Calibration = STRUCTURED_CALIBRATION, evaluation: Evaluation = STRUCTURED_EVALUATION,
        output: Output = Output(), progress: bool = True) -> RunRecord:
    """Prune whole heads and MLP channels; the folder reloads (plain from_pretrained when widths are uniform)."""
    from ..errors import KenpruneError
    from ..evaluate import evaluate, evaluate_tasks
    from ..evaluate.latency import compare_latency, latency_flags
    from ..data.windows import windows_for
    from ..models.loading import LoadedModel, load_model, load_tokenizer
    from ..structured.importance import IMPORTANCE
    from ..structured.io import save_structured
    from ..structured.plan import PrunePlan
    from ..structured.prune import prune_structured

    if output.folder is None:
        raise KenpruneError("--out is required: the folder to write the pruned model to")
    settings.check()
    calibration.check()
    evaluation.check()
    check_output(output, [model])
    plan = PrunePlan(settings.ratio, settings.keep_first, settings.keep_last, settings.round_to,
                     settings.global_ranking)
    timer = StageTimer()
    windows = None
    if IMPORTANCE.get(settings.importance).gradients and settings.ratio > 0:
        with timer.stage("calibration_data"):  # before the weights load: a too-large request fails in seconds
            windows = windows_for(load_tokenizer(model), calibration)
    with timer.stage("load"):
        loaded = load_model(model)
    identity = loaded.identity()
    dense = copy.deepcopy(loaded.model) if (settings.latency or evaluation.enabled or evaluation.tasks_enabled) \
        else None
    with timer.stage("prune"):
        result = prune_structured(loaded, plan, importance=settings.importance,
                                  attention_unit=settings.attention_unit, calib=calibration.data,
                                  nsamples=calibration.samples, seqlen=calibration.seqlen, seed=calibration.seed,
                                  blocks_per_pass=settings.blocks_per_pass, windows=windows, progress=progress)
    summary = result.to_dict()
    record = new_record("structured", identity, "structured",
                        given(model=model, structured=settings, calibration=calibration, evaluation=evaluation),
                        {"structured": settings.to_dict(), "calibration": calibration.to_dict(),
                         "evaluation": evaluation.to_dict()})
    record.layer_quantity = "removed fraction"
    record.layers = _block_table(result)
    record.details.update({**summary, "sparsity": summary["block_parameters_removed"],
                           "pruned_model": loaded.identity()})
    if settings.latency:
        with timer.stage("latency"):
            dense_latency, pruned_latency, ratios = compare_latency(dense, loaded.model,
                                                                    rounds=settings.latency_repeats)
        record.details["latency"] = {"dense": dense_latency, "pruned": pruned_latency, "speedup": ratios,
                                     "flags": latency_flags(dense_latency, pruned_latency, ratios)}
    if evaluation.enabled:
        with timer.stage("eval"):
            dense_loaded = LoadedModel(dense, loaded.tokenizer, loaded.name, loaded.source, loaded.task, loaded.bos)
            if evaluation.before:
                record.quality.append(evaluate(dense_loaded, evaluation, role="before", label="dense",
                                               progress=progress))
            record.quality.append(evaluate(loaded, evaluation, role="after", label="pruned", progress=progress))
    if evaluation.tasks_enabled:
        with timer.stage("tasks"):
            if evaluation.before:
                record.quality += evaluate_tasks(LoadedModel(dense, loaded.tokenizer, loaded.name, loaded.source,
                                                             loaded.task, loaded.bos), evaluation, role="before",
                                                 label="dense", progress=progress)
            record.quality += evaluate_tasks(loaded, evaluation, role="after", label="pruned", progress=progress)
    del dense
    with output_folder(output) as tmp:
        with timer.stage("save"):
            save_structured(loaded, tmp, {"method": "structured", "base": identity, "structured": summary})
        record.files = [FileEntry(".", "hf-folder", path_bytes(tmp), "model")]
        write_record(record, tmp, timer)
    return record


def structured_prune(model: str = DEFAULT_MODEL, out: str | Path | None = None, *,
                     calibration: Calibration = STRUCTURED_CALIBRATION, evaluation: Evaluation = STRUCTURED_EVALUATION,
                     overwrite: bool = False, progress: bool = True, **options: Any) -> RunRecord:
    """`run` with StructuredSettings given as keywords (importance, ratio, keep_first, ...)."""
    return run(model, StructuredSettings(**options), calibration=calibration, evaluation=evaluation,
               output=Output(out, overwrite), progress=progress)
