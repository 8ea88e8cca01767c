"""The real lm-evaluation-harness on a model in memory: exact accuracy, offline, one-line errors.

lm-eval's TaskManager indexes only the folders it is given (never its 14k stock YAMLs here), and is built
once per process, so these tests pay lm-eval's import once (about 1 s)."""
from __future__ import annotations

import json
import math
import os
import socket

import pytest
import torch
import yaml

from kenprune.errors import KenpruneError
from kenprune.evaluate import EVALUATORS, TASK_METRIC, ZERO_SHOT, evaluate_tasks
from kenprune.evaluate.zero_shot import mean_interval, run_tasks, select_tasks, wilson
from kenprune.models.loading import LoadedModel
from kenprune.settings import Evaluation
from tests.structured.conftest import tiny_causal_lm, tiny_loaded_model

ITEMS = [  # a hand-made three-item task; labels are set from the model's own log-likelihoods below
    {"question": "The capital of France is", "choices": ["Paris", "London", "a small green apple"]},
    {"question": "Two plus two equals", "choices": ["four", "the moon", "seven"]},
    {"question": "The sky on a clear day is", "choices": ["blue", "made of cheese", "loud"]},
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS

    tok = AutoTokenizer.from_pretrained(MODELS.get("smollm2-135m").folder())
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


@pytest.fixture(scope="module")
def tiny(tokenizer):
    return tiny_loaded_model(tiny_causal_lm(vocab=len(tokenizer), layers=2), tokenizer, "tiny-llama")


def choice_loglikelihoods(model, tokenizer, context: str, choices: list[str]) -> list[float]:
    """Sum of log p(choice tokens | context), computed here from the model's logits (not lm-eval's code)."""
    out = []
    for choice in choices:
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
        whole = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
        assert whole[:len(ctx)] == ctx  # the choice starts on a token boundary
        with torch.no_grad():
            logits = model(torch.tensor([whole])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logp[i - 1, whole[i]]) for i in range(len(ctx), len(whole))))
    return out


def write_task(folder, items, name="handmade_three"):
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in items))
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("model_kind", ["tiny", "smollm2-135m"])
def test_handmade_task_gives_the_independently_computed_accuracy(model_kind, tiny, tokenizer, tmp_path, no_network):
    """Items 1 and 2 are labelled with the model's argmax choice, item 3 with its argmin: 2/3 exactly."""
    if model_kind == "tiny":
        loaded = tiny
    else:
        from kenprune.models.loading import load_model

        loaded = load_model("smollm2-135m")
    items = []
    for i, item in enumerate(ITEMS):
        scores = choice_loglikelihoods(loaded.model, tokenizer, item["question"], item["choices"])
        assert len(set(scores)) == len(scores)  # no ties, so the argmax is defined
        pick = max if i < 2 else min
        items.append({**item, "label": scores.index(pick(scores))})
    folder = write_task(tmp_path, items)
    result = run_tasks(loaded, select_tasks("handmade_three", str(folder)), progress=False)
    (task,) = result["tasks"]
    assert task["n"] == 3 and task["correct"] == 2
    assert task["value"] == pytest.approx(2 / 3, abs=1e-12)
    assert task["yaml_sha256"] and result["protocol"]["num_fewshot"] == 0


def test_harness_runs_offline_on_a_tiny_model(tiny, no_network, tmp_path, monkeypatch):
    """A local task (written into the cache) runs with no network; results, protocol and environment."""
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    before = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    spec = Evaluation(tasks="sentiment,analogy", task_limit=6, task_batch_size=4)
    entries = evaluate_tasks(tiny, spec, role="after", label="tiny", progress=False)
    assert torch.rand(1) == expected_draw  # the caller's random state is untouched
    assert {k: os.environ.get(k) for k in before} == before
    mean, *tasks = entries
    assert mean.metric == ZERO_SHOT and mean.data == "tasks:sentiment,analogy"
    assert [t.data for t in tasks] == ["kenprune_sentiment", "kenprune_analogy"]
    for t in tasks:
        p = t.protocol
        assert t.metric == TASK_METRIC and p["n"] == 6 and p["limit"] == 6 and p["batch_size"] == 4
        assert p["correct"] == round(t.value * 6) and p["ci95"] == list(wilson(p["correct"], 6))
        assert p["data_file"].startswith(str(tmp_path)) and len(p["data_sha256"]) == 64
        assert p["offline"] is True and p["dtype"] == "float32" and p["lm_eval_version"] == "0.4.13"
        assert p["chance"] == {"kenprune_sentiment": 0.5, "kenprune_analogy": 0.25}[t.data]
    assert mean.value == pytest.approx(sum(t.value for t in tasks) / 2)
    assert mean.protocol["mean_ci95"][0] <= mean.value <= mean.protocol["mean_ci95"][1]


def test_wilson_and_mean_intervals():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 40)[0] == 0.0 and wilson(40, 40)[1] == 1.0
    lo, hi = mean_interval([{"value": 0.5, "n": 100}, {"value": 0.5, "n": 100}])
    assert hi - 0.5 == pytest.approx(1.959964 * math.sqrt(0.0025 / 2), rel=1e-6)


def test_selection():
    s = select_tasks("cloze,kenprune_topic,default,stock:hellaswag")
    assert s.local == ("cloze", "topic", "analogy", "continuation", "sentiment") and s.stock == ("hellaswag",)
    assert s.names[-1] == "hellaswag" and s.names[0] == "kenprune_cloze"
    assert select_tasks("all").local == tuple(["analogy", "cloze", "continuation", "sentiment", "topic"])
    assert "zero-shot" in EVALUATORS


@pytest.mark.parametrize("spec, task_dir, message", [
    ("hellaswag", None, "unknown task 'hellaswag'"),  # a stock name is never taken for a local one
    ("nope", None, "unknown task 'nope'"),
    (None, None, "no tasks given"),
    ("default", "empty", "holds no task YAML"),
    ("default", "missing", "does not exist"),
])
def test_selection_errors_are_one_line(spec, task_dir, message, tmp_path):
    if task_dir == "empty":
        task_dir = str(tmp_path)
    elif task_dir == "missing":
        task_dir = str(tmp_path / "missing")
    with pytest.raises(KenpruneError, match=message) as info:
        select_tasks(spec, task_dir)
    assert "\n" not in str(info.value)


def test_model_errors_are_one_line(tiny):
    no_tokenizer = LoadedModel(tiny.model, None, "no-tok", "tiny", "causal-lm")
    with pytest.raises(KenpruneError, match="has no tokenizer") as info:
        run_tasks(no_tokenizer, select_tasks("sentiment"), limit=2, progress=False)
    assert "\n" not in str(info.value)
    encoder = LoadedModel(tiny.model, tiny.tokenizer, "enc", "tiny", "encoder")
    with pytest.raises(KenpruneError, match="need a causal LM"):
        run_tasks(encoder, select_tasks("sentiment"), limit=2, progress=False)
    with pytest.raises(KenpruneError, match="--limit"):
        Evaluation(tasks="default", task_limit=0).check()


def test_tasks_written_after_an_earlier_run_in_the_same_process_are_found(tiny, no_network, tmp_path, monkeypatch):
    """A first run writes only its own task files; a later run in the same process asks for another task, whose
    file appears only then (the README's commands run in one process: sentiment first, then the default suite)."""
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    first = evaluate_tasks(tiny, Evaluation(tasks="sentiment", task_limit=2), role="after", label="a", progress=False)
    second = evaluate_tasks(tiny, Evaluation(tasks="topic", task_limit=2), role="after", label="b", progress=False)
    assert [q.data for q in first[1:]] == ["kenprune_sentiment"]
    assert [q.data for q in second[1:]] == ["kenprune_topic"]
