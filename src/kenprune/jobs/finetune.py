"""`kenprune finetune`: make the (pre-trained, fine-tuned) pairs KEN needs, on CPU, reproducibly.

Labelled corpora (pang-lee, newsgroups-mini) fine-tune a sequence classifier on the `calib` split
and report held-out accuracy on `test`; text corpora (lee, wiki, text:PATH) adapt a causal LM on
`calib` and report held-out perplexity on `test` before and after. The output is a normal Hugging
Face folder plus kenprune.json (its base: name + weights hash; `initial`) and run.json. A classifier
also saves its starting point (backbone + head initialisation) in `initial/`: that is KEN's
pre-trained side for it, since the pre-trained encoder has no head.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..errors import KenpruneError
from ..fileio import write_json
from ..measure import StageTimer, path_bytes
from ..record import FileEntry, RunRecord
from ..settings import DEFAULT_ENCODER, FINETUNE_EVALUATION, Evaluation, FinetuneSettings, Output, given
from .common import check_output, new_record, output_folder, write_record

if TYPE_CHECKING:
    from ..models.loading import LoadedModel

INITIAL_DIR = "initial"
RECORD_FILE = "kenprune.json"  # the model folder's own note: its base and initial state
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


def run(model: "str | LoadedModel" = DEFAULT_ENCODER, settings: FinetuneSettings = FinetuneSettings(), *,
        evaluation: Evaluation = FINETUNE_EVALUATION, output: Output = Output(), progress: bool = True) -> RunRecord:
    """Fine-tune `model` on the calib split of settings.data; save an HF folder (+ initial/ for classifiers).

    model: a registry name or folder, or an already loaded causal LM (trained in place). The held-out
    split (`test` of the same corpus) is evaluated before and after under `evaluation`'s protocol.
    """
    from ..data.corpora import CORPORA, join_text, load_documents, parse_data_ref, tokenize_stream
    from ..evaluate import evaluate
    from ..models.loading import CAUSAL_LM, SEQUENCE_CLASSIFICATION, load_model, save_model

    if output.folder is None:
        raise KenpruneError("kenprune finetune needs --out DIR: the folder for the fine-tuned model")
    settings.check()
    check_output(output, [model if isinstance(model, str) else None])
    data = settings.data
    corpus = data.split(":", 1)[0]
    train_ref = parse_data_ref(data if ":" in data else f"{data}:calib")
    test_ref = f"{corpus}:test" if corpus in CORPORA else str(train_ref)
    labelled = corpus in CORPORA and CORPORA.get(corpus).labelled
    seed, batch_size = settings.seed, settings.batch_size
    random.seed(seed)
    torch.manual_seed(seed)  # the classifier head's initialisation depends on it
    gen = torch.Generator().manual_seed(seed)
    timer = StageTimer()
    docs = load_documents(train_ref)
    with timer.stage("load"):
        if labelled:
            if not isinstance(model, str):
                raise KenpruneError("a classifier fine-tune starts from a model name or folder (it adds the head)")
            labels = sorted({d.label for d in load_documents(f"{corpus}:all")})
            loaded = load_model(model, task=SEQUENCE_CLASSIFICATION, labels=labels)
            batches = _batches_classification(loaded, docs, labels, batch_size, settings.seqlen, gen)
            per_epoch = math.ceil(len(docs) / batch_size)
        else:
            loaded = load_model(model) if isinstance(model, str) else model
            if loaded.task != CAUSAL_LM:
                raise KenpruneError(f"{data} is unlabelled text: fine-tuning on it needs a causal LM, not "
                                    f"{loaded.task}; use a labelled corpus (pang-lee, newsgroups-mini) for {model}")
            tokens = tokenize_stream(loaded.tokenizer, join_text(docs))
            batches = _batches_causal(tokens, batch_size, settings.seqlen, gen)
            per_epoch = max(1, tokens.numel() // (batch_size * settings.seqlen))
    total = settings.steps or max(1, math.ceil(settings.epochs * per_epoch))
    lr = settings.lr or DEFAULT_LR[loaded.task]
    base = loaded.identity()
    heldout = evaluation.replace(data=test_ref)
    record = new_record("finetune", base, "finetune", given(model=model if isinstance(model, str) else loaded.name,
                                                          finetune=settings, evaluation=evaluation),
                        {"finetune": {**settings.to_dict(), "steps": total, "lr": lr},
                         "evaluation": heldout.to_dict()})
    with output_folder(output) as tmp:
        with timer.stage("eval_before"):
            record.quality.append(evaluate(loaded, heldout, role="before", label="pre-trained", progress=progress))
        if labelled:
            save_model(loaded, tmp / INITIAL_DIR, {"role": "initial state of a kenprune fine-tune (KEN's base)",
                                                   "base": base})
        optimizer = torch.optim.AdamW(loaded.model.parameters(), lr=lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total)
        loaded.model.train()
        losses: list[float] = []
        with timer.stage("train"):
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
        loaded.model.eval()
        with timer.stage("eval_after"):
            record.quality.append(evaluate(loaded, heldout, role="after", label="fine-tuned", progress=progress))
        record.details.update({
            "task": loaded.task, "initial": INITIAL_DIR if labelled else None,
            "data": {"train": str(train_ref), "heldout": test_ref, "train_documents": len(docs)},
            "steps": total, "epochs": total / per_epoch, "lr": lr, "batch_size": batch_size, "seqlen": settings.seqlen,
            "seed": seed, "loss": {"first": losses[0], "last": losses[-1], "curve": losses},
            "train_seconds": timer.seconds["train"],
        })
        with timer.stage("save"):
            loaded.model.save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
            write_json(tmp / RECORD_FILE, {"bos": loaded.bos, "base": base, "initial": record.details["initial"],
                                           "task": loaded.task})
        record.files = [FileEntry(".", "hf-folder", path_bytes(tmp), "model")]
        if labelled:
            record.files.append(FileEntry(INITIAL_DIR, "hf-folder", path_bytes(tmp / INITIAL_DIR), "initial"))
        write_record(record, tmp, timer)
    return record


def finetune(model: "str | LoadedModel" = DEFAULT_ENCODER, data: str = FinetuneSettings.data, *, out: str | Path,
             evaluation: Evaluation = FINETUNE_EVALUATION, overwrite: bool = False, progress: bool = True,
             **options: Any) -> RunRecord:
    """`run` with FinetuneSettings given as keywords (steps, epochs, lr, batch_size, seqlen, seed)."""
    return run(model, FinetuneSettings(data=data, **options), evaluation=evaluation, output=Output(out, overwrite),
               progress=progress)
