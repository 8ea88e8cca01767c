"""`kenprune prune --stream on --eval-tasks ...`: zero-shot tasks before and after, scored block by block, give the
accuracies of `--stream off`; activations spilled to disk (a --max-memory below the runtime) change nothing."""
from __future__ import annotations

import pytest

from kenprune.cli import main
from kenprune.evaluate import TASK_METRIC, ZERO_SHOT
from kenprune.record import read
from tests.jobs.test_prune_stream import four_blocks, prune_argv  # noqa: F401 - the module fixture

TASKS = ["--eval-tasks", "sentiment,cloze", "--eval-limit", "4", "--task-batch-size", "3"]


def tasks_of(record):
    return [(q.metric, q.data, q.role, q.value, q.protocol.get("correct"), q.protocol.get("n"))
            for q in record.quality if q.metric in (ZERO_SHOT, TASK_METRIC)]


@pytest.fixture(scope="module")
def in_memory(four_blocks, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("mem") / "run"
    assert main(prune_argv(four_blocks, out, "--stream", "off", *TASKS)) == 0
    return read(out)


@pytest.mark.parametrize("memory", [[], ["--max-memory", "100MB"]], ids=["in-ram", "spilled"])
def test_streamed_tasks_equal_the_in_memory_ones(four_blocks, in_memory, tmp_path, memory):  # noqa: F811
    out = tmp_path / "run"
    assert main(prune_argv(four_blocks, out, "--stream", "on", *memory, *TASKS)) == 0
    record = read(out)
    assert record.details["memory"]["path"] == "streamed"
    assert tasks_of(record) == tasks_of(in_memory)  # same accuracy, item for item counts, before and after
    assert {q.role for q in record.quality if q.metric == TASK_METRIC} == {"before", "after"}
    for q in record.quality:
        if q.metric == TASK_METRIC:
            held = q.protocol["streamed"]
            assert q.protocol["path"] == "streamed" and held["requests"] > 0 and held["rss_max_bytes"] > 0
            assert (held["spilled_bytes"] == held["activations_bytes"] > 0) if memory else held["spilled_bytes"] == 0
        elif q.metric == ZERO_SHOT:
            assert q.protocol["path"] == "streamed"
    assert all(q.protocol["path"] == "in-memory" for q in in_memory.quality if q.metric == ZERO_SHOT)
    assert {"tasks_before", "tasks_after"} <= set(record.seconds())
    from kenprune.report.zero_shot import task_view

    assert task_view(record).protocol["path"] == "streamed"  # the report says which path scored the tasks
