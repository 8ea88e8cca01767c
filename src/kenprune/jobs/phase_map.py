"""`kenprune phase-map`: prunability over a temperature-like axis x density, with each cell's regime.

The temperature-like axis is fine-tuning steps on `data` (one run, checkpoints taken at each listed step;
step 0 is the starting point) or checkpoint folders the user lists. For each checkpoint (the dense parent)
and density: prune (magnitude, wanda or sparsegpt, at sparsity 1 - density), optionally recover for a few
masked steps, measure quality and loss on a held-out batch, the loss along the straight line from the
pruned model (alpha 0) to its parent (alpha 1), its barrier, and the linear CKA of their final hidden
states; name the regime (kenprune.phase.barrier). Writes OUT/run.json (kind phase-map); nothing else.
"""
from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import KenpruneError
from ..measure import StageTimer
from ..record import RunRecord
from ..settings import DEFAULT_ENCODER, Output, PhaseMapSettings, given
from .common import check_output, new_record, output_folder, write_record

DEFAULT_LR = {"sequence-classification": 1e-4, "causal-lm": 3e-5}


def _load(model: str, data: str, seed: int) -> Any:
    """A classifier (fresh head, seeded) for labelled data, else the model's own task."""
    from ..data.corpora import CORPORA, load_documents
    from ..models.loading import SEQUENCE_CLASSIFICATION, load_model

    corpus = data.split(":", 1)[0]
    torch.manual_seed(seed)
    if corpus in CORPORA and CORPORA.get(corpus).labelled:
        labels = sorted({d.label for d in load_documents(f"{corpus}:all")})
        return load_model(model, task=SEQUENCE_CLASSIFICATION, labels=labels)
    return load_model(model)


def _cells(parent: Any, label: str, step: int | None, settings: PhaseMapSettings, held: Any, calib: Any,
           train_data: str, lr: float, timer: StageTimer, progress: bool) -> list[dict[str, Any]]:
    """Every density of one dense parent: prune, recover, measure, barrier, similarity, regime."""
    from ..engine.elementwise import prune_model
    from ..phase.barrier import barrier, linear_cka, loss_curve, regime
    from ..phase.measure import Trainer, keep_masks, measure, train_batches

    model = parent.model
    dense_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dense = measure(model, held, representation=True)
    work = copy.deepcopy(model)
    alphas = [i / (settings.alphas - 1) for i in range(settings.alphas)]
    cells = []
    for density in tqdm(settings.densities, desc=f"phase map {label}", disable=not progress, leave=False):
        work.load_state_dict(dense_state)
        with timer.stage("prune"):
            prune_model(work, calib, method=settings.method, sparsity=1.0 - density, progress=False)
        if settings.recover_steps:
            with timer.stage("recover"):
                trainer = Trainer(work, train_batches(parent, train_data, settings.batch_size, settings.seqlen,
                                                      settings.seed + 1), lr, settings.recover_steps, keep_masks(work))
                trainer.step(settings.recover_steps)
        with timer.stage("measure"):
            pruned = measure(work, held, representation=True)
            pruned_state = {k: v.detach().clone() for k, v in work.state_dict().items()}
            losses = loss_curve(work, pruned_state, dense_state, alphas, lambda m: measure(m, held)["loss"])
            value, at = barrier(alphas, losses)
            similarity = linear_cka(pruned["representation"], dense["representation"])
        cells.append({"temperature": label, "step": step, "density": density, "sparsity": 1.0 - density,
                      "quality": pruned["quality"], "loss": pruned["loss"], "dense_quality": dense["quality"],
                      "dense_loss": dense["loss"], "barrier": value, "barrier_alpha": at, "losses": losses,
                      "similarity": similarity,
                      "regime": regime(value, similarity, settings.barrier_threshold, settings.similarity_threshold)})
    del work
    return cells


def run(model: str = DEFAULT_ENCODER, settings: PhaseMapSettings = PhaseMapSettings(), *,
        output: Output = Output(), progress: bool = True) -> RunRecord:
    """The phase map of `model` (see the module docstring); the record holds every cell."""
    from ..data.corpora import CORPORA, parse_data_ref
    from ..data.windows import calibration_windows
    from ..methods import METHODS, NO_STATISTIC
    from ..models.loading import load_model
    from ..phase.barrier import REGIMES
    from ..phase.measure import Trainer, held_out, train_batches

    settings.check()
    check_output(output, [model, *settings.checkpoints])
    corpus = settings.data.split(":", 1)[0]
    train_data = str(parse_data_ref(settings.data, default_split="calib"))
    eval_data = settings.eval_data or (f"{corpus}:test" if corpus in CORPORA else train_data)
    random.seed(settings.seed)
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(settings.checkpoints[0]) if settings.checkpoints else _load(model, settings.data,
                                                                                        settings.seed)
    identity = loaded.identity()
    lr = settings.lr or DEFAULT_LR.get(loaded.task, 3e-5)
    held = held_out(loaded, eval_data, settings.eval_examples, settings.seqlen)
    needs_calib = METHODS.get(settings.method).statistic != NO_STATISTIC
    calib = calibration_windows(loaded.tokenizer, train_data, nsamples=settings.calib_samples, seqlen=settings.seqlen,
                                seed=settings.seed) if needs_calib else None
    record = new_record("phase-map", identity, settings.method, given(model=model, phase_map=settings),
                        {"phase_map": {**settings.to_dict(), "lr": lr, "data": train_data, "eval_data": eval_data}})
    cells: list[dict[str, Any]] = []
    start = time.perf_counter()
    training: dict[str, Any] = {}
    if settings.checkpoints:
        axis = "checkpoints (as listed)"
        for i, folder in enumerate(settings.checkpoints):
            parent = loaded if i == 0 else load_model(folder)
            if parent.task != loaded.task:
                raise KenpruneError(f"checkpoint {folder} is a {parent.task} model, {settings.checkpoints[0]} a "
                                    f"{loaded.task}: a phase map compares checkpoints of one model")
            cells += _cells(parent, Path(folder).name, None, settings, held, calib, train_data, lr, timer, progress)
    else:
        axis = "fine-tuning steps"
        steps = sorted(settings.steps)
        trainer = Trainer(loaded.model, train_batches(loaded, train_data, settings.batch_size, settings.seqlen,
                                                      settings.seed), lr, steps[-1])
        for step in steps:
            with timer.stage("train"):
                trainer.step(step - trainer.done)
            cells += _cells(loaded, f"{step} steps", step, settings, held, calib, train_data, lr, timer, progress)
        training = {"data": train_data, "steps": steps[-1], "lr": lr, "batch_size": settings.batch_size,
                    "seqlen": settings.seqlen, "schedule": f"AdamW, linear decay over {steps[-1]} steps",
                    "loss_curve": trainer.losses}
    temperatures = list(dict.fromkeys(c["temperature"] for c in cells))
    record.details.update({
        "axis": axis, "temperatures": temperatures, "densities": list(settings.densities), "cells": cells,
        "quality_metric": held.metric, "higher_is_better": held.metric == "accuracy",
        "held_out": {"data": held.data, "examples": held.size, "seqlen": settings.seqlen},
        "alphas": settings.alphas, "recover_steps": settings.recover_steps, "training": training,
        "thresholds": {"barrier": settings.barrier_threshold, "similarity": settings.similarity_threshold},
        "regimes": REGIMES, "barrier_between": "the pruned (and recovered) model at alpha 0 and its dense parent at 1",
        "similarity": "linear CKA of final hidden states (classifier: [CLS]; causal LM: every 8th position)",
        "seconds": time.perf_counter() - start})
    with output_folder(output) as tmp:
        write_record(record, tmp, timer)
    return record


def phase_map(model: str = DEFAULT_ENCODER, *, out: str | Path | None = None, overwrite: bool = False,
              progress: bool = True, **options: Any) -> RunRecord:
    """`run` with PhaseMapSettings given as keywords, e.g. `phase_map("minilm-l6", steps=(0, 50), out="pm/")`."""
    return run(model, PhaseMapSettings(**options), output=Output(out, overwrite), progress=progress)
