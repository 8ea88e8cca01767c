"""Zero-shot requests scored block by block (StreamedLM) give lm-eval's HFLM answers on the model in memory:
the same log-likelihoods and greedy flags for kenprune's local tasks, on tiny random Llama and GPT-2 folders,
with activations in RAM or spilled to disk; tasks that need generation are refused in one line."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from kenprune.errors import KenpruneError
from kenprune.evaluate.tasks import TASKS, ensure_tasks, task_name
from kenprune.evaluate.zero_shot import run_tasks, select_tasks, task_manager
from kenprune.models.lazy import LazyModel
from kenprune.models.loading import load_model

LIMIT = 3  # items per task: every local task, each request kind (multiple choice, loglikelihood), long passages


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny random Llama and GPT-2 (3 blocks, a context of 256 tokens: cloze passages get truncated), with
    smollm2's real tokenizer."""
    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS
    from kenprune.testing import tiny_causal_lm

    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("smollm2-135m").folder())
    out = {}
    for arch in ("llama", "gpt2"):
        model = tiny_causal_lm(arch, layers=3, vocab=len(tokenizer))
        model.config.architectures = [type(model).__name__]
        folder = tmp_path_factory.mktemp(arch)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out[arch] = folder
    return out


@pytest.fixture(scope="module")
def requests(tmp_path_factory):
    """lm-eval's loglikelihood requests (Instances) of every local task, LIMIT items each."""
    folder = tmp_path_factory.mktemp("tasks")
    ensure_tasks(TASKS.names(), folder)
    tasks = task_manager((str(folder),), False).load([task_name(n) for n in TASKS.names()])["tasks"]
    out = []
    for task in tasks.values():
        task.build_all_requests(limit=LIMIT, rank=0, world_size=1)
        out += task.instances
    assert {r.request_type for r in out} == {"loglikelihood"} and len(out) > 5 * LIMIT
    return out


def lms(folder, *, budget=1 << 62, spill_dir=None, batch_size=4, **options):
    from lm_eval.models.huggingface import HFLM

    from kenprune.evaluate.streamed_lm import StreamedLM

    memory = load_model(folder)
    memory.tokenizer.pad_token = memory.tokenizer.pad_token or memory.tokenizer.eos_token
    streamed = LazyModel.open(folder).loaded()
    streamed.activation_budget, streamed.spill_dir = budget, spill_dir
    streamed.tokenizer.pad_token = streamed.tokenizer.pad_token or streamed.tokenizer.eos_token
    return (HFLM(pretrained=memory.model, tokenizer=memory.tokenizer, backend="causal", batch_size=batch_size,
                 device="cpu", **options),
            StreamedLM(streamed, streamed.tokenizer, batch_size=batch_size, device="cpu", progress=False, **options))


def assert_same_answers(expected, got):
    assert len(expected) == len(got)
    assert [g for _, g in got] == [g for _, g in expected]  # identical greedy flags
    assert torch.allclose(torch.tensor([x for x, _ in got], dtype=torch.float64),
                          torch.tensor([x for x, _ in expected], dtype=torch.float64), rtol=0, atol=1e-4)
    assert len({x for x, _ in got}) > 1  # real, differing scores


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_streamed_loglikelihoods_equal_hflm_in_memory(folders, requests, arch):
    memory, streamed = lms(folders[arch])
    with torch.no_grad():
        expected = memory.loglikelihood(requests, disable_tqdm=True)
    got = streamed.loglikelihood(requests, disable_tqdm=True)
    assert_same_answers(expected, got)
    (held,) = streamed.passes  # all requests of all tasks in one block-by-block pass
    assert held["requests"] == len(requests) and held["batches"] > 1 and held["spilled_bytes"] == 0
    assert held["activations_bytes"] > 0 and held["rss_max_bytes"] > 0


def test_spilled_activations_give_the_same_answers(folders, requests, tmp_path):
    memory, streamed = lms(folders["llama"], budget=0, spill_dir=tmp_path / "spill")
    with torch.no_grad():
        expected = memory.loglikelihood(requests, disable_tqdm=True)
    assert_same_answers(expected, streamed.loglikelihood(requests, disable_tqdm=True))
    held = streamed.held()
    assert held["spilled_bytes"] == held["activations_bytes"] > 0 and held["activation_budget_bytes"] == 0
    assert any((tmp_path / "spill").iterdir())


@pytest.mark.parametrize("batch_size", [1, 3])
def test_other_batches_and_left_truncation_give_the_same_answers(folders, requests, batch_size):
    """max_length 48: the longer requests (cloze passages of 60-200 words) lose tokens on the left, as in HFLM."""
    memory, streamed = lms(folders["gpt2"], batch_size=batch_size, max_length=48)
    by_length = sorted(requests, key=lambda r: len(r.args[0]) + len(r.args[1]))
    chosen = by_length[:6] + by_length[-6:]
    assert max(len(memory.tok_encode(r.args[0])) for r in chosen) > 48
    with torch.no_grad():
        expected = memory.loglikelihood(chosen, disable_tqdm=True)
    assert_same_answers(expected, streamed.loglikelihood(chosen, disable_tqdm=True))
    assert streamed.passes[0]["batches"] >= -(-len({(r.args[0]) for r in chosen}) // batch_size)


def test_run_tasks_streamed_records_the_path_and_the_memory(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    selection = select_tasks("sentiment,analogy")
    memory = run_tasks(load_model(folders["llama"]), selection, limit=4, batch_size=4, progress=False)
    streamed = run_tasks(LazyModel.open(folders["llama"]).loaded(), selection, limit=4, batch_size=4, progress=False)
    assert memory["protocol"]["path"] == "in-memory" and streamed["protocol"]["path"] == "streamed"
    for a, b in zip(memory["tasks"], streamed["tasks"]):
        assert (a["task"], a["value"], a["correct"], a["n"]) == (b["task"], b["value"], b["correct"], b["n"])
        assert "streamed" not in a and b["streamed"]["passes"] == 1 and b["streamed"]["requests"] > 0


def test_a_generation_task_is_refused_in_one_line_naming_it(folders, tmp_path):
    data = tmp_path / "echo.jsonl"
    data.write_text("".join(json.dumps({"q": f"Say {w}:", "a": w}) + "\n" for w in ("yes", "no")))
    (tmp_path / "echo.yaml").write_text(yaml.safe_dump({
        "task": "echo_gen", "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "{{q}}", "doc_to_target": "{{a}}", "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]}))
    with pytest.raises(KenpruneError, match="task echo_gen needs lm-eval's generate_until") as info:
        run_tasks(LazyModel.open(folders["gpt2"]).loaded(), select_tasks("echo_gen", str(tmp_path)), progress=False)
    assert "\n" not in str(info.value) and "--stream off" in str(info.value)
