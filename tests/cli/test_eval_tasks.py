"""`kenprune eval --tasks` and `prune --eval-tasks`: lm-eval runs on the model in memory, offline, recorded."""
from __future__ import annotations

import pytest

from kenprune.cli import main
from kenprune.record import read


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path_factory.getbasetemp() / "kenprune-cache"))


def test_eval_tasks_end_to_end(tmp_path, capsys, tiny_llama_folder):
    out = tmp_path / "run"
    assert main(["eval", "--model", str(tiny_llama_folder), "--tasks", "sentiment,topic", "--limit", "4",
                 "--task-batch-size", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("zero-shot mean accuracy: ") and "kenprune_topic acc" in text and "4 of 40 items" in text
    record = read(out)
    assert [q.metric for q in record.quality] == ["zero-shot", "task accuracy", "task accuracy"]  # no perplexity
    assert record.settings["resolved"]["evaluation"]["tasks"] == "sentiment,topic"
    assert record.quality[1].protocol["limit"] == 4 and "tasks" in record.seconds()


def test_prune_eval_tasks_dense_and_pruned(tmp_path, tiny_llama_folder):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_llama_folder), "--method", "magnitude", "--sparsity", "0.5",
                 "--eval-tasks", "sentiment", "--eval-limit", "3", "--out", str(out)]) == 0
    record = read(out)
    assert [(q.metric, q.role, q.model) for q in record.quality] == [
        ("zero-shot", "before", "dense"), ("task accuracy", "before", "dense"),
        ("zero-shot", "after", "pruned"), ("task accuracy", "after", "pruned")]
    assert {"tasks_before", "tasks_after"} <= set(record.seconds())


@pytest.mark.parametrize("args, message", [
    (["eval", "--tasks", "piqa"], "unknown task 'piqa'"),
    (["eval", "--task-dir", "no/such/dir"], "does not exist"),
    (["prune", "--eval-tasks", "default", "--eval-limit", "0"], "--limit"),
])
def test_bad_task_options_fail_in_one_line_before_loading(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_search_final_check_scores_the_searched_allocation(tmp_path, tiny_llama_folder):
    """search --eval-tasks prunes a copy with the best allocation and scores it next to the dense model."""
    out = tmp_path / "search"
    assert main(["search", "--model", str(tiny_llama_folder), "--quick", "--workers", "1", "--seqlen", "32",
                 "--eval-seqlen", "32", "--eval-tasks", "sentiment", "--eval-limit", "2", "--out", str(out)]) == 0
    record = read(out)
    assert [(q.metric, q.role, q.model) for q in record.quality] == [
        ("perplexity", "after", "searched allocation"), ("zero-shot", "before", "dense"),
        ("task accuracy", "before", "dense"), ("zero-shot", "after", "searched allocation"),
        ("task accuracy", "after", "searched allocation")]
    assert "tasks" in record.seconds()
