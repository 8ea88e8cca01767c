"""`kenprune recover`: LoRA fine-tuning of a (pruned) model, merged back into plain weights, recorded."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..measure import StageTimer, path_bytes
from ..record import FileEntry, RunRecord
from ..settings import RECOVER_EVALUATION, Evaluation, LoraSettings, Output, given
from .common import check_output, new_record, output_folder, write_record


def run(model: str, settings: LoraSettings = LoraSettings(), *, evaluation: Evaluation = RECOVER_EVALUATION,
        output: Output = Output(), progress: bool = True) -> RunRecord:
    """LoRA-tune `model` on settings.data, merge the adapters, save a plain folder; quality before and after."""
    from ..errors import KenpruneError
    from ..evaluate import evaluate, evaluate_tasks
    from ..models.families import adapter_for
    from ..models.loading import load_model
    from ..structured.io import save_structured
    from ..structured.recover import lora_recover

    if output.folder is None:
        raise KenpruneError("--out is required: the folder for the recovered model")
    settings.check()
    evaluation.check()
    check_output(output, [model])
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model)
    adapter_for(loaded.model)  # a family without an adapter fails before the first evaluation
    source = loaded.identity()
    record = new_record("recover", source, "lora-recovery", given(model=model, lora=settings, evaluation=evaluation),
                        {"lora": settings.to_dict(), "evaluation": evaluation.to_dict()})
    if evaluation.enabled and evaluation.before:
        with timer.stage("eval_before"):
            record.quality.append(evaluate(loaded, evaluation, role="before", label="pruned", progress=progress))
    if evaluation.tasks_enabled and evaluation.before:
        with timer.stage("tasks_before"):
            record.quality += evaluate_tasks(loaded, evaluation, role="before", label="pruned", progress=progress)
    with timer.stage("train"):
        training = lora_recover(loaded, settings.data, settings, progress=progress)
    if evaluation.enabled:
        with timer.stage("eval_after"):
            record.quality.append(evaluate(loaded, evaluation, role="after", label="recovered", progress=progress))
    if evaluation.tasks_enabled:
        with timer.stage("tasks_after"):
            record.quality += evaluate_tasks(loaded, evaluation, role="after", label="recovered", progress=progress)
    record.details["training"] = training
    with output_folder(output) as tmp:
        with timer.stage("save"):
            save_structured(loaded, tmp, {**loaded.record, "recovery": training, "recovered_from": source})
        record.files = [FileEntry(".", "hf-folder", path_bytes(tmp), "model")]
        write_record(record, tmp, timer)
    return record


def recover(model: str, out: str | Path, *, evaluation: Evaluation = RECOVER_EVALUATION, overwrite: bool = False,
            progress: bool = True, **options: Any) -> RunRecord:
    """`run` with LoraSettings given as keywords (data, steps, seqlen, lr, rank, ...)."""
    return run(model, LoraSettings(**options), evaluation=evaluation, output=Output(out, overwrite), progress=progress)
