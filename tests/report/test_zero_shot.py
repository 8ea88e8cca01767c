"""The zero-shot part of a report: a table and a per-task bar chart, dense against pruned, chance marked."""
from __future__ import annotations

from kenprune.record import Quality, RunRecord, write
from kenprune.report import zero_shot as view_module
from kenprune.report.build import write_report
from kenprune.report.runs import read_run


def _entries(role: str, model: str, values: dict[str, float], n: int = 40) -> list[Quality]:
    from kenprune.evaluate.zero_shot import mean_interval, wilson

    shared = {"evaluator": "lm-evaluation-harness", "lm_eval_version": "0.4.13", "num_fewshot": 0, "limit": n,
              "batch_size": 8, "dtype": "float32", "offline": True, "selection": "default"}
    tasks = [{"task": t, "metric": "acc", "value": v, "n": n, "n_available": 100, "correct": round(v * n),
              "ci95": list(wilson(round(v * n), n)), "chance": 0.25, "data_sha256": "ab" * 32,
              "yaml_sha256": "cd" * 32, "seconds": 1.0} for t, v in values.items()]
    mean = sum(values.values()) / len(values)
    out = [Quality("zero-shot", mean, "tasks:default", role, model,
                   {**shared, "data": "tasks:default", "mean_ci95": list(mean_interval(tasks)), "tasks": tasks}, 2.0)]
    return out + [Quality("task accuracy", t["value"], t["task"], role, model, {**shared, **t}, 1.0) for t in tasks]


def test_names_match_the_evaluators():
    from kenprune.evaluate import TASK_METRIC, ZERO_SHOT

    assert (view_module.TASK_METRIC, view_module.ZERO_SHOT) == (TASK_METRIC, ZERO_SHOT)


def test_report_shows_tasks_dense_against_pruned(tmp_path):
    values = {"kenprune_analogy": 0.6, "kenprune_cloze": 0.3}
    record = RunRecord(kind="eval", model={"name": "smollm2-135m"},
                       quality=[Quality("perplexity", 20.0, "wiki:test", "before", "dense", {"data": "wiki:test"})]
                       + _entries("before", "dense", values) + _entries("after", "pruned", {"kenprune_analogy": 0.4,
                                                                                            "kenprune_cloze": 0.1}))
    folder = tmp_path / "run"
    folder.mkdir()
    write(record, folder)
    run = read_run(folder)
    view = run.zero_shot
    assert view.tasks == ["analogy", "cloze", "mean"] and list(view.series) == ["dense", "pruned"]
    assert view.chance == [0.25, 0.25, None]
    assert view.series["dense"][0][0] == 0.6 and view.series["pruned"][2][0] == (0.4 + 0.1) / 2
    key = "kenprune_analogy (acc, 40 of 100 items, chance 0.25)"
    assert view.table[key].startswith("dense 0.600 [") and "; pruned 0.400 [" in view.table[key]
    assert view.protocol["lm_eval_version"] == "0.4.13" and view.protocol["kenprune_cloze data sha256"] == "ab" * 32
    assert "task accuracy" not in run.summary  # per-task figures are in their own table, not one garbled row
    page = write_report(folder).read_text()
    assert "Zero-shot tasks (lm-evaluation-harness)" in page and "Zero-shot accuracy per task for each model" in page
    assert (folder / "report-figures").is_dir()


def test_no_tasks_no_view(tmp_path):
    record = RunRecord(kind="eval", model={"name": "m"},
                       quality=[Quality("perplexity", 20.0, "wiki:test", "after", "m", {"data": "wiki:test"})])
    assert view_module.task_view(record) is None
