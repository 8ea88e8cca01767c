"""What the structured pipeline trains and scores on, chosen by the model's task: token windows of a text
corpus for a causal LM (language-modelling loss on themselves), labelled batches of a labelled corpus for a
sequence classifier (its classification loss). Both kinds are plain items for `importance.forward` and
`recover.train_steps`: a tensor of token ids, or a dict of input_ids / attention_mask / labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.corpora import load_documents
from ..errors import KenpruneError
from ..models.loading import SEQUENCE_CLASSIFICATION, LoadedModel

Item = torch.Tensor | dict[str, torch.Tensor]


def is_classifier(loaded: LoadedModel) -> bool:
    return loaded.task == SEQUENCE_CLASSIFICATION


def _labelled(data: str) -> bool:
    docs = load_documents(data)
    return bool(docs) and all(d.label is not None for d in docs)


def _finetune_data(loaded: LoadedModel) -> str | None:
    """The labelled split a `kenprune finetune` run folder was trained on (its run.json), if `loaded` is one."""
    from ..record import read

    folder = Path(str(loaded.source))
    if not (folder / "run.json").is_file():
        return None
    try:
        train = read(folder).details.get("data", {}).get("train")
    except KenpruneError:
        return None
    return train if train and _labelled(train) else None


def labelled_data(loaded: LoadedModel, data: str, option: str) -> str:
    """The labelled split a classifier trains or scores on: `data` when it is labelled, else the split the
    model was fine-tuned on (a `kenprune finetune` run folder records it); a one-line error otherwise."""
    if _labelled(data):
        return data
    own = _finetune_data(loaded)
    if own is None:
        raise KenpruneError(f"{loaded.name} is a classifier: {option} must be a labelled split (pang-lee:calib, "
                            f"newsgroups-mini:calib), not {data}")
    return own


def labelled_batches(loaded: LoadedModel, data: str, *, count: int, batch_size: int, seqlen: int, seed: int,
                     pad_to_length: bool = False) -> list[dict[str, torch.Tensor]]:
    """`count` batches of `batch_size` labelled documents of `data` in a seeded random order (wrapping around),
    tokenized to at most `seqlen` tokens (exactly `seqlen` with pad_to_length), labels by config.label2id."""
    docs = load_documents(data)
    label2id = {str(k): int(v) for k, v in loaded.model.config.label2id.items()}
    missing = sorted({d.label for d in docs} - set(label2id))
    if missing:
        raise KenpruneError(f"the model's labels {sorted(label2id)} do not cover {missing} in {data}")
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    batches = []
    for i in range(count):
        chosen = [docs[order[(i * batch_size + j) % len(docs)]] for j in range(batch_size)]
        enc = loaded.tokenizer([d.text for d in chosen], truncation=True, max_length=seqlen, return_tensors="pt",
                               padding="max_length" if pad_to_length else True)
        batches.append({**dict(enc), "labels": torch.tensor([label2id[d.label] for d in chosen])})
    return batches


def calibration_items(loaded: LoadedModel, data: str, *, nsamples: int, seqlen: int, seed: int,
                      labelled: bool) -> tuple[str, torch.Tensor | list[dict[str, torch.Tensor]]]:
    """(data used, items) for scoring: `nsamples` random token windows, or (`labelled`: for a classifier's loss)
    `nsamples` single labelled documents padded to `seqlen` (one backward each, positions aligned)."""
    from ..data.windows import calibration_windows

    if not labelled:
        return data, calibration_windows(loaded.tokenizer, data, nsamples=nsamples, seqlen=seqlen, seed=seed)
    data = labelled_data(loaded, data, "--calib")
    return data, labelled_batches(loaded, data, count=nsamples, batch_size=1, seqlen=seqlen, seed=seed,
                                  pad_to_length=True)


def training_items(loaded: LoadedModel, data: str, settings: Any) -> tuple[str, list[Item]]:
    """(data used, one batch per step) for `settings` (LoraSettings): windows of a text for a causal LM,
    labelled batches for a classifier."""
    from .recover import training_windows

    if is_classifier(loaded):
        data = labelled_data(loaded, data, "--train-data")
        return data, labelled_batches(loaded, data, count=settings.steps, batch_size=settings.batch_size,
                                      seqlen=settings.seqlen, seed=settings.seed)
    windows = training_windows(loaded, data, settings)
    rows = [torch.arange(s * settings.batch_size, (s + 1) * settings.batch_size) % windows.size(0)
            for s in range(settings.steps)]
    return data, [windows[r] for r in rows]


def batch_loss(model: torch.nn.Module, batch: Item, device: torch.device) -> torch.Tensor:
    """The training loss of one batch: a dict carries its labels (classification), token ids are their own."""
    if isinstance(batch, dict):
        return model(**{k: v.to(device) for k, v in batch.items()}).loss
    batch = batch.to(device)
    return model(input_ids=batch, labels=batch, use_cache=False).loss
