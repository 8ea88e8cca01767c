"""`kenprune eval`: the quality of one model under the pinned protocol, recorded like any run."""
from __future__ import annotations

from pathlib import Path

from ..measure import StageTimer
from ..record import RunRecord
from ..settings import DEFAULT_MODEL, Evaluation, Output, given
from .common import check_output, new_record, output_folder, write_record

# what `kenprune eval` measures when no data is named
DEFAULT_EVALUATION = Evaluation(data="wiki:test")


def run(model: str = DEFAULT_MODEL, evaluation: Evaluation = DEFAULT_EVALUATION, *, output: Output = Output(),
        progress: bool = True) -> RunRecord:
    """Perplexity for a causal LM, accuracy for a sequence classifier (when evaluation.data is set), zero-shot
    task accuracy (when evaluation.tasks or task_dir is set); OUT/run.json when output.folder is set."""
    from ..errors import KenpruneError
    from ..evaluate import ZERO_SHOT, evaluate, evaluate_tasks, evaluator_for
    from ..models.loading import load_model

    evaluation.check()
    check_output(output, [model])
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model)
    if not (evaluation.data or evaluation.tasks_enabled):
        raise KenpruneError("nothing to evaluate: give --data and/or --tasks")
    evaluator_for(loaded.task, ZERO_SHOT if evaluation.tasks_enabled and not evaluation.data else None)  # one line
    if evaluation.tasks_enabled and loaded.tokenizer is None:      # for an encoder without a head or a tokenizer
        raise KenpruneError(f"{model} has no tokenizer; zero-shot tasks score text, so give a model folder with its "
                            f"tokenizer files")
    with timer.stage("identify"):
        identity = loaded.identity()
    record = new_record("eval", identity, None, given(model=model, evaluation=evaluation),
                        {"evaluation": evaluation.to_dict()})
    if evaluation.data:
        with timer.stage("eval"):
            record.quality.append(evaluate(loaded, evaluation, role="after", label=loaded.name, progress=progress))
    if evaluation.tasks_enabled:
        with timer.stage("tasks"):
            record.quality += evaluate_tasks(loaded, evaluation, role="after", label=loaded.name, progress=progress)
    with output_folder(output) as tmp:
        write_record(record, tmp, timer)
    return record


def evaluate_model(model: str = DEFAULT_MODEL, data: str = "wiki:test", *, out: str | Path | None = None,
                   overwrite: bool = False, progress: bool = True, **protocol) -> RunRecord:
    """`run` with the evaluation given as keywords (seqlen, windows, bos, batch_size)."""
    return run(model, Evaluation(data=data, **protocol), output=Output(out, overwrite), progress=progress)
