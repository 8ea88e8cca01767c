"""kenprune's offline zero-shot tasks: lm-evaluation-harness task YAMLs plus JSONL, written deterministically.

Each task is built from evaluation text only (test splits, and the published analogy set), never from
calibration text, so a pruned model is never scored on what it was calibrated on. The files go into the
cache (`$KENPRUNE_CACHE/tasks/v{VERSION}`); their sha256 is recorded in every result. Items are shuffled
with a fixed seed when written, so `--limit N` (lm-eval scores the first N) is a uniform sample.

A local task never carries a stock lm-eval task's name: every one is `kenprune_<name>`.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import KenpruneError
from ..registry import Registry

VERSION = 1  # bump when any builder, prompt or file layout below changes: it names the cache folder
PREFIX = "kenprune_"
SEED = 0
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*[A-Za-z]$")


@dataclass(frozen=True)
class LocalTask:
    """One offline task: how to build its items, the lm-eval config around them, and its chance level."""

    build: Callable[[], list[dict]]
    config: dict  # lm-eval task keys besides task, dataset_* and split
    chance: float
    primary: str  # the metric the mean accuracy uses
    source: str


def _sentences(text: str) -> list[str]:
    """Prose sentences of a document (wiki headings and list lines dropped)."""
    lines = [line.strip() for line in text.splitlines()]
    prose = " ".join(line for line in lines if line and not line.startswith(("=", "*", "#", "|", "{")))
    return [s.strip() for s in _SENTENCE_END.split(prose) if len(s.split()) >= 4]


def _documents(refs: tuple[str, ...]) -> list:
    from ..data.corpora import load_documents

    return [doc for ref in refs for doc in load_documents(ref)]


PASSAGE_SOURCES = ("wiki:test", "lee:test")


def build_cloze(min_words: int = 60, max_words: int = 200) -> list[dict]:
    """LAMBADA's format: a passage of whole sentences whose last word must be predicted, kept only where
    that word occurs earlier in the passage (so the context is needed); one passage ends at each sentence
    (passages overlap, targets do not). acc = the word is the model's greedy output."""
    items = []
    for doc in _documents(PASSAGE_SOURCES):
        sentences = _sentences(doc.text)
        for end in range(len(sentences)):  # one passage per sentence end: the fewest sentences before it
            start = end                      # that make min_words
            while start > 0 and len(" ".join(sentences[start:end + 1]).split()) < min_words:
                start -= 1
            words = " ".join(sentences[start:end + 1]).split()
            if not min_words <= len(words) <= max_words:
                continue
            target = words[-1].rstrip(".!?\"')")
            if not _WORD.match(target) or len(target) < 3:
                continue
            earlier = {w.strip(".,;:!?\"'()").lower() for w in words[:-1]}
            if target.lower() in earlier:
                items.append({"context": " ".join(words[:-1]), "target": target, "source": doc.title})
    return items


def build_continuation(context_sentences: int = 2, choices: int = 4) -> list[dict]:
    """HellaSwag's format: a passage's true next sentence against three sentences from other test documents
    (of similar length, so length alone does not give it away); acc and acc_norm."""
    docs = [(doc.title, _sentences(doc.text)) for doc in _documents(PASSAGE_SOURCES)]
    rng = random.Random(SEED)
    items = []
    for index, (title, sentences) in enumerate(docs):
        others = [s for j, (_, ss) in enumerate(docs) if j != index for s in ss]
        for start in range(0, len(sentences) - context_sentences, context_sentences + 1):
            context = " ".join(sentences[start:start + context_sentences])
            true = sentences[start + context_sentences]
            n = len(true.split())
            similar = [s for s in others if n / 1.5 <= len(s.split()) <= n * 1.5 and s != true]
            if len(similar) < choices - 1:
                continue
            endings = rng.sample(similar, choices - 1)
            label = rng.randrange(choices)
            endings.insert(label, true)
            items.append({"context": context, "endings": endings, "label": label, "source": title})
    return items


def build_analogy(choices: int = 4) -> list[dict]:
    """Google's word-analogy set (Mikolov et al. 2013, in gensim): "Athens is to Greece as Baghdad is to"
    with the true answer among distractors from the same section; acc."""
    from gensim.test.utils import datapath

    sections: dict[str, list[list[str]]] = {}
    section = ""
    for line in Path(datapath("questions-words.txt")).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
            sections[section] = []
        elif line.strip():
            sections[section].append(line.split())
    rng = random.Random(SEED)
    items = []
    for name, questions in sections.items():
        answers = sorted({q[3] for q in questions})
        for a, b, c, d in questions:
            pool = [w for w in answers if w not in (a, b, c, d)]
            options = rng.sample(pool, choices - 1)
            label = rng.randrange(choices)
            options.insert(label, d)
            items.append({"question": f"{a} is to {b} as {c} is to", "choices": options, "label": label,
                          "section": name})
    return items


def build_sentiment() -> list[dict]:
    """pang-lee test sentences as a 2-way prompt (negative / positive)."""
    return [{"text": doc.text.strip(), "label": ["neg", "pos"].index(doc.label)}
            for doc in _documents(("pang-lee:test",))]


TOPIC_WORDS = 150  # newsgroup posts are cut to their first 150 words (some run to thousands)


def build_topic() -> list[dict]:
    """newsgroups-mini test posts as a 2-way prompt (religion / space)."""
    labels = ["alt.atheism", "sci.space"]
    return [{"text": " ".join(doc.text.split()[:TOPIC_WORDS]), "label": labels.index(doc.label)}
            for doc in _documents(("newsgroups-mini:test",))]


_ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
_ACC_NORM = _ACC + [{"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]

TASKS: Registry[LocalTask] = Registry("task")
TASKS.add("analogy", LocalTask(build_analogy, {
    "output_type": "multiple_choice", "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}",
    "doc_to_target": "{{label}}", "metric_list": _ACC}, 0.25, "acc", "gensim questions-words.txt (Google analogy)"),
    "word analogies (Google's set, 19,544 questions, 14 sections), 4 choices from the same section")
TASKS.add("cloze", LocalTask(build_cloze, {
    "output_type": "loglikelihood", "doc_to_text": "{{context}}", "doc_to_target": "{{' ' + target}}",
    "target_delimiter": "", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]},
    0.0, "acc", "wiki:test + lee:test"),
    "LAMBADA-style last word of a passage (the word occurs earlier in it); acc = greedy prediction")
TASKS.add("continuation", LocalTask(build_continuation, {
    "output_type": "multiple_choice", "doc_to_text": "{{context}}", "doc_to_choice": "{{endings}}",
    "doc_to_target": "{{label}}", "metric_list": _ACC_NORM}, 0.25, "acc_norm", "wiki:test + lee:test"),
    "HellaSwag-style true next sentence against 3 from other test documents; acc, acc_norm")
TASKS.add("sentiment", LocalTask(build_sentiment, {
    "output_type": "multiple_choice", "doc_to_text": "Review: {{text}}\nSentiment:",
    "doc_to_choice": ["negative", "positive"], "doc_to_target": "{{label}}", "metric_list": _ACC}, 0.5, "acc",
    "pang-lee:test"), "movie-review polarity (pang-lee test), 2-way")
TASKS.add("topic", LocalTask(build_topic, {
    "output_type": "multiple_choice", "doc_to_text": "Post: {{text}}\nThis post is about",
    "doc_to_choice": ["religion", "space"], "doc_to_target": "{{label}}", "metric_list": _ACC}, 0.5, "acc",
    "newsgroups-mini:test"), "newsgroup topic (alt.atheism vs sci.space, newsgroups-mini test), 2-way")

# The default suite: the tasks on which dense smollm2-135m is clearly above chance, i.e. the lower end of its
# 95 % interval lies above the chance level (benchmarks/results/zero_shot*.json, 40 items each, fp32):
# analogy 0.825 [0.68, 0.91] vs 0.25, cloze 0.600 [0.45, 0.74] vs ~0, continuation (acc_norm) 0.575 [0.42, 0.71]
# vs 0.25, sentiment 0.750 [0.60, 0.86] vs 0.5, topic 0.975 [0.87, 1.00] vs 0.5: all five.
DEFAULT_SUITE = ("analogy", "cloze", "continuation", "sentiment", "topic")


def task_name(name: str) -> str:
    """The lm-eval name of a local task."""
    return PREFIX + name


def local_name(name: str) -> str | None:
    """`analogy` or `kenprune_analogy` -> `analogy`; anything else -> None."""
    bare = name[len(PREFIX):] if name.startswith(PREFIX) else name
    return bare if bare in TASKS else None


def tasks_folder() -> Path:
    from ..provenance import cache_root

    return cache_root() / "tasks" / f"v{VERSION}"


def _task_yaml(name: str, task: LocalTask, data_file: Path) -> str:
    import yaml

    config = {"task": task_name(name), "dataset_path": "json", "dataset_name": None,
              "dataset_kwargs": {"data_files": {"test": str(data_file)}}, "test_split": "test",
              "num_fewshot": 0, **task.config, "metadata": {"version": VERSION, "source": task.source}}
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def _jsonl(items: list[dict]) -> str:
    order = list(range(len(items)))
    random.Random(SEED).shuffle(order)  # --limit N scores the first N: make them a uniform sample
    return "".join(json.dumps(items[i], ensure_ascii=False, sort_keys=True) + "\n" for i in order)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_task(name: str, folder: Path) -> dict:
    """Write kenprune_NAME.jsonl and kenprune_NAME.yaml into `folder` (atomically); their facts."""
    from ..fileio import atomic_file

    task = TASKS.get(name)
    items = task.build()
    if not items:
        raise KenpruneError(f"task {name}: its source {task.source} gave no items")
    data_file = folder / f"{task_name(name)}.jsonl"
    with atomic_file(data_file) as tmp:
        tmp.write_text(_jsonl(items), encoding="utf-8")
    with atomic_file(folder / f"{task_name(name)}.yaml") as tmp:
        tmp.write_text(_task_yaml(name, task, data_file), encoding="utf-8")
    return {"items": len(items)}


def ensure_tasks(names: list[str], folder: Path | None = None) -> Path:
    """Write the named local tasks into `folder` (default: the cache) unless already there; the folder."""
    folder = tasks_folder() if folder is None else Path(folder)
    for name in names:
        stem = folder / task_name(name)
        if not (stem.with_suffix(".yaml").is_file() and stem.with_suffix(".jsonl").is_file()):
            write_task(name, folder)
    return folder


def task_files(name: str, folder: Path | None = None) -> dict:
    """The task's files and their sha256 (data and config), and its item count."""
    folder = tasks_folder() if folder is None else Path(folder)
    stem = folder / task_name(name)
    data, config = stem.with_suffix(".jsonl"), stem.with_suffix(".yaml")
    with data.open("rb") as handle:
        items = sum(1 for _ in handle)
    return {"data_file": str(data), "data_sha256": sha256_file(data), "yaml_file": str(config),
            "yaml_sha256": sha256_file(config), "items": items}


__all__ = ["DEFAULT_SUITE", "LocalTask", "TASKS", "VERSION", "ensure_tasks", "local_name", "task_files",
           "task_name", "tasks_folder", "write_task"]
