"""kenprune's offline zero-shot tasks: deterministic files, built from evaluation text only, never a stock name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kenprune.evaluate.tasks import DEFAULT_SUITE, PREFIX, TASKS, local_name, task_files, task_name, write_task


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every task written twice, into two folders."""
    first, second = tmp_path_factory.mktemp("tasks-a"), tmp_path_factory.mktemp("tasks-b")
    for name in TASKS.names():
        write_task(name, first)
        write_task(name, second)
    return first, second


def _items(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{task_name(name)}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", TASKS.names())
def test_generation_is_deterministic(written, name):
    """The same items in the same order, byte for byte; the YAML differs only in the folder it points to."""
    first, second = written
    a, b = task_files(name, first), task_files(name, second)
    assert a["data_sha256"] == b["data_sha256"] and a["items"] == b["items"] > 0
    yaml_a = (first / f"{task_name(name)}.yaml").read_text()
    yaml_b = (second / f"{task_name(name)}.yaml").read_text()
    assert yaml_a.replace(str(first), "DIR") == yaml_b.replace(str(second), "DIR")


def test_sizes_and_labels(written):
    """Each task as large as its source allows, with labels in range."""
    folder = written[0]
    analogy = _items(folder, "analogy")
    assert len(analogy) == 19544  # Google's analogy set, every question
    assert len({item["section"] for item in analogy}) == 14
    for name in ("analogy", "continuation"):
        for item in _items(folder, name):
            options = item.get("choices") or item["endings"]
            assert len(options) == 4 and len(set(options)) == 4 and 0 <= item["label"] < 4
    assert len(_items(folder, "sentiment")) == len(_items(folder, "topic")) == 40  # the whole test splits
    assert {i["label"] for i in _items(folder, "sentiment")} == {0, 1}
    for item in _items(folder, "cloze"):  # LAMBADA's intent: the word occurs earlier in the passage
        assert item["target"].lower() in item["context"].lower()


def test_items_come_from_evaluation_text_only(written, monkeypatch):
    """Every builder reads test splits only (never calib or valid), and its passages are test text.

    (The Lee corpus repeats some news sentences across articles, so a phrase can also occur in a calibration
    article: the split is by document, as for perplexity.)"""
    from kenprune.data import corpora

    asked: list[str] = []
    real = corpora.load_documents
    monkeypatch.setattr(corpora, "load_documents", lambda ref: asked.append(str(ref)) or real(ref))
    for name in TASKS.names():
        TASKS.get(name).build()
    assert asked and all(ref.endswith(":test") for ref in asked), asked
    from kenprune.evaluate.tasks import _sentences

    # passages are made of prose sentences (wiki headings and list lines dropped): compare with the same text
    sentences = " ".join(s for ref in ("wiki:test", "lee:test") for d in real(ref) for s in _sentences(d.text))
    words = " ".join(sentences.split())  # cloze passages are whitespace-split words
    for item in _items(written[0], "cloze")[:100]:
        assert " ".join(item["context"].split()[-12:]) in words
    for item in _items(written[0], "continuation")[:100]:
        assert item["endings"][item["label"]] in sentences


def test_first_items_are_a_sample_of_every_section(written):
    """Items are shuffled when written, so --limit N is not just the first section."""
    first_200 = _items(written[0], "analogy")[:200]
    assert len({item["section"] for item in first_200}) >= 8


def test_names_never_clash_with_stock_tasks():
    """Every local task is kenprune_NAME, and lm-eval ships no task of that name."""
    import lm_eval

    stock = Path(lm_eval.__file__).parent / "tasks"
    for name in TASKS.names():
        assert task_name(name).startswith(PREFIX) and local_name(task_name(name)) == name
    hits = [p for p in stock.rglob("*.yaml") if f"task: {PREFIX}" in p.read_text(errors="replace")]
    assert hits == []
    assert set(DEFAULT_SUITE) <= set(TASKS.names())
