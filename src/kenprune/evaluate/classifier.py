"""Classification accuracy of a sequence classifier on a labelled split."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import provenance
from ..data.corpora import DataRef, load_documents, parse_data_ref
from ..errors import KenpruneError
from ..models.loading import SEQUENCE_CLASSIFICATION, LoadedModel


@dataclass
class AccuracyResult:
    accuracy: float
    correct: int
    total: int
    data: str
    labels: list[str]
    seconds: float
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": "accuracy", "accuracy": self.accuracy, "correct": self.correct,
                "total": self.total, "protocol": {"data": self.data, "labels": self.labels},
                "model": self.model, "seconds": self.seconds, **provenance.record()}


@torch.inference_mode()
def accuracy(loaded: LoadedModel, data: str | DataRef = "pang-lee:test", *, batch_size: int = 16,
             max_length: int = 256, progress: bool = True, identify: bool = True) -> AccuracyResult:
    """Classification accuracy of a sequence-classification model on a labelled split."""
    if loaded.task != SEQUENCE_CLASSIFICATION:
        raise KenpruneError(f"{loaded.name} is a {loaded.task} model; accuracy needs a sequence-classification model")
    ref = parse_data_ref(data) if isinstance(data, str) else data
    docs = load_documents(ref)
    if not docs or any(d.label is None for d in docs):
        raise KenpruneError(f"{ref} is not a labelled corpus; use pang-lee or newsgroups-mini")
    label2id = {str(k): int(v) for k, v in loaded.model.config.label2id.items()}
    missing = sorted({d.label for d in docs} - set(label2id))
    if missing:
        raise KenpruneError(f"the model's labels {sorted(label2id)} do not cover {missing} in {ref}")
    device = next(loaded.model.parameters()).device
    start = time.perf_counter()
    correct = 0
    for i in tqdm(range(0, len(docs), batch_size), desc=f"accuracy {ref}", disable=not progress, leave=False):
        batch = docs[i:i + batch_size]
        enc = loaded.tokenizer([d.text for d in batch], padding=True, truncation=True,
                               max_length=max_length, return_tensors="pt").to(device)
        predicted = loaded.model(**enc).logits.argmax(dim=-1).tolist()
        correct += sum(int(p == label2id[d.label]) for p, d in zip(predicted, batch))
    return AccuracyResult(accuracy=correct / len(docs), correct=correct, total=len(docs), data=str(ref),
                          labels=sorted(label2id, key=label2id.get), seconds=time.perf_counter() - start,
                          model=loaded.identity() if identify else {"name": loaded.name})
