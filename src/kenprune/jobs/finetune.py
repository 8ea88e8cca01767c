"""`kenprune finetune`: make the (pre-trained, fine-tuned) pairs KEN needs, on CPU, reproducibly.

Labelled corpora (pang-lee, newsgroups-mini) fine-tune a sequence classifier on the `calib` split
and report held-out accuracy on `test`; text corpora (lee, wiki, text:PATH) adapt a causal LM on
`calib` and report held-out perplexity on `test` before and after. The output is a normal Hugging
Face folder plus kenprune.json (base name + weights hash, data, steps, seed, metrics). A classifier
also saves its starting point (backbone + head initialisation) in `initial/`: that is KEN's
pre-trained side for it, since the pre-trained encoder has no head.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .. import provenance
from ..errors import KenpruneError
from ..fileio import atomic_dir, write_json

if TYPE_CHECKING:
    from ..models.loading import LoadedModel

INITIAL_DIR = "initial"
DEFAULT_LR = {"sequence-classification": 1e-4, "causal-lm": 3e-5}


def _batches_classification(loaded, docs, labels, batch_size: int, max_length: int, gen: torch.Generator):
    """Endless shuffled epochs of tokenised (inputs, labels) batches."""
    label2id = {lab: i for i, lab in enumerate(labels)}
    while True:
        order = torch.randperm(len(docs), generator=gen).tolist()
        for i in range(0, len(order), batch_size):
            batch = [docs[j] for j in order[i:i + batch_size]]
            enc = loaded.tokenizer([d.text for d in batch], padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt")
            yield dict(enc), torch.tensor([label2id[d.label] for d in batch])


def _batches_causal(tokens: torch.Tensor, batch_size: int, seqlen: int, gen: torch.Generator):
    """Endless random windows [batch, seqlen] of a token stream."""
    if tokens.numel() < seqlen + 1:
        raise KenpruneError(f"the training text has {tokens.numel()} tokens, fewer than one window of {seqlen}")
    while True:
        starts = torch.randint(0, tokens.numel() - seqlen + 1, (batch_size,), generator=gen)
        yield torch.stack([tokens[s:s + seqlen] for s in starts.tolist()])


def finetune(model: "str | LoadedModel" = "minilm-l6", data: str = "pang-lee", *, out: str | Path,
             steps: int | None = None,
             epochs: float = 4.0, lr: float | None = None, batch_size: int = 16, seqlen: int = 128,
             seed: int = 0, eval_windows: int | None = 8, progress: bool = True) -> dict[str, Any]:
    """Fine-tune `model` on CORPUS's calib split; save an HF folder (+ initial/ for classifiers) to `out`.

    model: a registry name or folder, or an already loaded causal LM (trained in place).
    steps overrides epochs. Returns the record written to OUT/kenprune.json (metrics included).
    """
    from ..data.corpora import CORPORA, join_text, load_documents, parse_data_ref, tokenize_stream
    from ..models.loading import CAUSAL_LM, SEQUENCE_CLASSIFICATION, load_model, save_model
    from ..ken.api import evaluate_loaded

    corpus = data.split(":", 1)[0]
    train_ref = parse_data_ref(data if ":" in data else f"{data}:calib")
    test_ref = f"{corpus}:test" if corpus in CORPORA else str(train_ref)
    labelled = corpus in CORPORA and CORPORA.get(corpus).labelled
    if steps is not None and steps < 1:
        raise KenpruneError(f"--steps must be at least 1, got {steps}")
    if batch_size < 1 or epochs <= 0:
        raise KenpruneError("--batch-size and --epochs must be positive")
    random.seed(seed)
    torch.manual_seed(seed)  # the classifier head's initialisation depends on it
    gen = torch.Generator().manual_seed(seed)
    docs = load_documents(train_ref)
    if labelled:
        if not isinstance(model, str):
            raise KenpruneError("a classifier fine-tune starts from a model name or folder (it adds the head)")
        labels = sorted({d.label for d in load_documents(f"{corpus}:all")})
        loaded = load_model(model, task=SEQUENCE_CLASSIFICATION, labels=labels)
        batches = _batches_classification(loaded, docs, labels, batch_size, seqlen, gen)
        per_epoch = math.ceil(len(docs) / batch_size)
    else:
        loaded = load_model(model) if isinstance(model, str) else model
        if loaded.task != CAUSAL_LM:
            raise KenpruneError(f"{data} is unlabelled text: fine-tuning on it needs a causal LM, not {loaded.task}; "
                                f"use a labelled corpus (pang-lee, newsgroups-mini) for {model}")
        tokens = tokenize_stream(loaded.tokenizer, join_text(docs))
        batches = _batches_causal(tokens, batch_size, seqlen, gen)
        per_epoch = max(1, tokens.numel() // (batch_size * seqlen))
    total = steps or max(1, math.ceil(epochs * per_epoch))
    lr = lr or DEFAULT_LR[loaded.task]
    base = loaded.identity()
    metric = lambda: evaluate_loaded(loaded, test_ref, eval_windows, seqlen, progress)  # noqa: E731
    out = Path(out)
    with atomic_dir(out) as tmp:
        before = metric()
        if labelled:
            save_model(loaded, tmp / INITIAL_DIR, {"role": "initial state of a kenprune fine-tune (KEN's base)",
                                                   "base": base})
        optimizer = torch.optim.AdamW(loaded.model.parameters(), lr=lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total)
        loaded.model.train()
        losses: list[float] = []
        start = time.perf_counter()
        bar = tqdm(range(total), desc=f"finetune {loaded.name} on {train_ref}", disable=not progress, leave=False)
        for _ in bar:
            batch = next(batches)
            if labelled:
                inputs, targets = batch
                loss = loaded.model(**inputs, labels=targets).loss
            else:
                loss = loaded.model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(loaded.model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        seconds = time.perf_counter() - start
        loaded.model.eval()
        after = metric()
        record = {
            "base": base, "initial": INITIAL_DIR if labelled else None, "task": loaded.task,
            "data": {"train": str(train_ref), "heldout": test_ref, "train_documents": len(docs)},
            "steps": total, "epochs": total / per_epoch, "lr": lr, "batch_size": batch_size, "seqlen": seqlen,
            "seed": seed, "metrics": {"before": before, "after": after},
            "loss": {"first": losses[0], "last": losses[-1], "curve": losses}, "train_seconds": seconds,
            **provenance.record(),
        }
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        write_json(tmp / "kenprune.json", {"bos": loaded.bos, **record})
    return record
