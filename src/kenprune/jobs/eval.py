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
    """Perplexity for a causal LM, accuracy for a sequence classifier; OUT/run.json when output.folder is set."""
    from ..evaluate import evaluate, evaluator_for
    from ..models.loading import load_model

    evaluation.check()
    check_output(output, [model])
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model)
    evaluator_for(loaded.task)  # an encoder without a head fails here, in one line
    with timer.stage("identify"):
        identity = loaded.identity()
    record = new_record("eval", identity, None, given(model=model, evaluation=evaluation),
                        {"evaluation": evaluation.to_dict()})
    with timer.stage("eval"):
        record.quality.append(evaluate(loaded, evaluation, role="after", label=loaded.name, progress=progress))
    with output_folder(output) as tmp:
        write_record(record, tmp, timer)
    return record


def evaluate_model(model: str = DEFAULT_MODEL, data: str = "wiki:test", *, out: str | Path | None = None,
                   overwrite: bool = False, progress: bool = True, **protocol) -> RunRecord:
    """`run` with the evaluation given as keywords (seqlen, windows, bos, batch_size)."""
    return run(model, Evaluation(data=data, **protocol), output=Output(out, overwrite), progress=progress)
