"""`kenprune structured`: remove whole heads and MLP channels (LLM-Pruner), save a smaller dense model that
reloads, measure its speed against the dense model in the same run, and record it."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..measure import StageTimer, path_bytes
from ..record import FileEntry, Layer, RunRecord
from ..settings import (DEFAULT_MODEL, STRUCTURED_CALIBRATION, STRUCTURED_EVALUATION, Calibration, Evaluation,
                        FederatedSettings, Output, StructuredSettings, given)
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
        output: Output = Output(), progress: bool = True,
        federated: FederatedSettings = FederatedSettings()) -> RunRecord:
    """Prune whole heads and MLP channels; the folder reloads (plain from_pretrained when widths are uniform).

    federated: score from statistics of clients' data (`clients`, each sampled with the Calibration's
    windows/seqlen/seed in this process; kenprune.federated.structured), merged with `weighting`.

    A causal LM scores, trains and recovers with the language-modelling loss on token windows; a sequence
    classifier (e.g. a `kenprune finetune` run folder) with its classification loss on labelled batches of
    --calib / --train-data, or of the split it was fine-tuned on when those are not labelled (structured.batches);
    its quality is accuracy on --eval (a labelled held-out split such as pang-lee:test)."""
    from ..errors import KenpruneError
    from ..evaluate import evaluate, evaluate_tasks
    from ..evaluate.latency import compare_latency, latency_flags
    from ..data.windows import windows_for
    from ..models.loading import CAUSAL_LM, SEQUENCE_CLASSIFICATION, LoadedModel, load_model, load_tokenizer
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
    fed = _check_federated(federated, settings) if federated.enabled else None
    plan = PrunePlan(settings.ratio, settings.keep_first, settings.keep_last, settings.round_to,
                     settings.global_ranking)
    timer = StageTimer()
    windows = None
    clients = None
    if fed is not None:
        from .stats import federated_windows

        with timer.stage("calibration_data"):
            clients = federated_windows(model, fed, calibration)
    elif IMPORTANCE.get(settings.importance).calibrated and settings.ratio > 0:
        with timer.stage("calibration_data"):  # before the weights load: a too-large request fails in seconds
            windows = windows_for(load_tokenizer(model), calibration)
    with timer.stage("load"):
        loaded = load_model(model)
    estimator = IMPORTANCE.get(settings.importance)
    causal = loaded.task == CAUSAL_LM
    if loaded.task not in (CAUSAL_LM, SEQUENCE_CLASSIFICATION) and (estimator.gradients or settings.steps):
        raise KenpruneError(f"{model} is an {loaded.task} model without a loss to score or train with; use l1, l2, "
                            f"beta-rank or random, or fine-tune it into a classifier first (kenprune finetune "
                            f"--model {model} --data pang-lee --out ft/)")
    if not causal and estimator.gradients:
        windows = None  # a classifier's gradients come from labelled batches of the calibration split (its loss)
    latency = settings.latency and causal  # prefill / decode speed is a causal LM's measurement
    identity = loaded.identity()
    dense = copy.deepcopy(loaded.model) if (latency or evaluation.enabled or evaluation.tasks_enabled) else None
    with timer.stage("prune"):
        result = prune_structured(loaded, plan, importance=settings.importance,
                                  attention_unit=settings.attention_unit, calib=calibration.data,
                                  nsamples=calibration.samples, seqlen=calibration.seqlen, seed=calibration.seed,
                                  blocks_per_pass=settings.blocks_per_pass, windows=windows, progress=progress,
                                  beta=settings.beta, stability=settings.stability,
                                  train=settings.training(calibration.seed) if settings.steps else None,
                                  polarization=settings.polarization, gate_lr=settings.gate_lr,
                                  clients=clients, weighting=federated.weighting, agreement=federated.agreement)
    summary = result.to_dict()
    trained = {}
    if settings.steps:
        trained = _train(loaded, settings, calibration.seed, evaluation, timer, progress,
                         recover=not IMPORTANCE.get(settings.importance).trained)
    record = new_record("structured", identity, "structured",
                        given(model=model, structured=settings, calibration=calibration, evaluation=evaluation,
                              federated=fed),
                        {"structured": settings.to_dict(), "calibration": calibration.to_dict(),
                         "evaluation": evaluation.to_dict(), **({"federated": fed.to_dict()} if fed else {})})
    record.layer_quantity = "removed fraction"
    record.layers = _block_table(result)
    record.details.update({**summary, "sparsity": summary["block_parameters_removed"],
                           "pruned_model": loaded.identity(), **trained.get("details", {})})
    if latency:
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
        record.quality += trained.get("quality", [])
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


def _check_federated(federated: FederatedSettings, settings: StructuredSettings) -> FederatedSettings:
    """One-line refusals of what federated structured pruning does not do, before any data or weights load."""
    from ..errors import KenpruneError
    from ..federated.structured import check_importance

    federated.check()
    if federated.stats:
        raise KenpruneError("kenprune structured federates with --clients (in this process); statistics files "
                            "(--stats) hold element-wise statistics for kenprune prune")
    if federated.workers > 1 or federated.ray_address:
        raise KenpruneError("kenprune structured runs its clients in this process (importances are computed once on "
                            "the dense model: one round); use --workers 1 without --ray-address")
    check_importance(settings.importance, settings.stability)
    return federated


def _train(loaded: Any, settings: StructuredSettings, seed: int, evaluation: Evaluation, timer: StageTimer,
           progress: bool, recover: bool) -> dict[str, Any]:
    """After pruning: the scratch control (the pruned architecture re-initialized and trained) and the LoRA
    recovery of the pruned weights, with the same data and steps; the unrecovered model's quality too."""
    from ..evaluate import evaluate
    from ..models.loading import LoadedModel
    from ..structured.recover import lora_recover
    from ..structured.scratch import train_from_scratch

    training = settings.training(seed)
    details: dict[str, Any] = {}
    quality = []
    if evaluation.enabled and recover:
        with timer.stage("eval"):
            quality.append(evaluate(loaded, evaluation, role="reference", label="pruned, not recovered",
                                    progress=progress))
    if settings.from_scratch:
        scratch = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.name, loaded.source, loaded.task,
                              loaded.bos)
        with timer.stage("scratch"):
            details["scratch"] = train_from_scratch(scratch, settings.train_data, training, settings.scratch_lr,
                                                    progress=progress)
        if evaluation.enabled:
            with timer.stage("eval"):
                quality.append(evaluate(scratch, evaluation, role="reference", label="scratch", progress=progress))
        del scratch
    if recover:
        with timer.stage("recover"):
            details["recovery"] = lora_recover(loaded, settings.train_data, training, progress=progress)
    return {"details": details, "quality": quality}


def structured_prune(model: str = DEFAULT_MODEL, out: str | Path | None = None, *,
                     calibration: Calibration = STRUCTURED_CALIBRATION, evaluation: Evaluation = STRUCTURED_EVALUATION,
                     overwrite: bool = False, progress: bool = True,
                     federated: FederatedSettings = FederatedSettings(), **options: Any) -> RunRecord:
    """`run` with StructuredSettings given as keywords (importance, ratio, keep_first, ...);
    `federated=FederatedSettings(clients=("wiki", "lee"))` scores from the clients' merged statistics."""
    return run(model, StructuredSettings(**options), calibration=calibration, evaluation=evaluation,
               output=Output(out, overwrite), progress=progress, federated=federated)
