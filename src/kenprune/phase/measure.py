"""The model side of the phase map: a held-out set, its loss / quality / representation, and masked training.

A classifier is measured on labelled examples (cross-entropy, accuracy, the [CLS] final hidden state); a
causal LM on token windows (mean next-token NLL, perplexity, final hidden states every 8th position).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..models.loading import SEQUENCE_CLASSIFICATION


@dataclass
class HeldOut:
    """What every cell is measured on: one batch of inputs (a few dozen examples or windows)."""

    task: str
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    data: str
    size: int

    @property
    def metric(self) -> str:
        return "accuracy" if self.task == SEQUENCE_CLASSIFICATION else "perplexity"


def held_out(loaded: Any, data: str, examples: int, seqlen: int) -> HeldOut:
    """The first `examples` labelled examples (classifier) or windows of `seqlen` tokens (causal LM) of `data`."""
    from ..data.corpora import join_text, load_documents, tokenize_stream
    from ..errors import KenpruneError
    from ..evaluate.language_model import make_windows, resolve_bos

    docs = load_documents(data)
    if loaded.task == SEQUENCE_CLASSIFICATION:
        docs = docs[:examples]
        label2id = {str(k): int(v) for k, v in loaded.model.config.label2id.items()}
        if any(d.label not in label2id for d in docs):
            raise KenpruneError(f"{data} has labels the model does not know ({sorted(label2id)})")
        enc = loaded.tokenizer([d.text for d in docs], padding=True, truncation=True, max_length=seqlen,
                               return_tensors="pt")
        return HeldOut(loaded.task, dict(enc), torch.tensor([label2id[d.label] for d in docs]), data, len(docs))
    windows = make_windows(tokenize_stream(loaded.tokenizer, join_text(docs)), seqlen, resolve_bos(loaded, "auto"),
                           examples)
    return HeldOut(loaded.task, {"input_ids": windows}, None, data, int(windows.shape[0]))


@torch.no_grad()
def measure(model: torch.nn.Module, held: HeldOut, representation: bool = False) -> dict[str, Any]:
    """{loss, quality (accuracy or perplexity)[, representation]} of `model` on the held-out batch."""
    model.eval()
    if held.labels is not None:
        out = model(**held.inputs, output_hidden_states=representation)
        loss = float(torch.nn.functional.cross_entropy(out.logits.float(), held.labels))
        result: dict[str, Any] = {"loss": loss,
                                  "quality": float((out.logits.argmax(-1) == held.labels).double().mean())}
        if representation:
            result["representation"] = out.hidden_states[-1][:, 0].float()
        return result
    ids = held.inputs["input_ids"]
    losses, reps = [], []
    for window in ids.split(4):
        out = model(input_ids=window, labels=window, use_cache=False, output_hidden_states=representation)
        losses.append(float(out.loss) * window.shape[0])
        if representation:
            reps.append(out.hidden_states[-1][:, ::8].reshape(-1, out.hidden_states[-1].shape[-1]).float())
    loss = sum(losses) / ids.shape[0]
    result = {"loss": loss, "quality": math.exp(loss)}
    if representation:
        result["representation"] = torch.cat(reps)
    return result


def train_batches(loaded: Any, data: str, batch_size: int, seqlen: int, seed: int) -> Iterator[Any]:
    """Endless shuffled training batches of `data` (the finetune job's own batching)."""
    from ..data.corpora import join_text, load_documents, tokenize_stream
    from ..jobs.finetune import _batches_causal, _batches_classification

    gen = torch.Generator().manual_seed(seed)
    docs = load_documents(data)
    if loaded.task == SEQUENCE_CLASSIFICATION:
        labels = [loaded.model.config.id2label[i] for i in sorted(loaded.model.config.id2label)]
        return _batches_classification(loaded, docs, labels, batch_size, seqlen, gen)
    return _batches_causal(tokenize_stream(loaded.tokenizer, join_text(docs)), batch_size, seqlen, gen)


def batch_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    if isinstance(batch, tuple):
        inputs, targets = batch
        return model(**inputs, labels=targets).loss
    return model(input_ids=batch, labels=batch).loss


class Trainer:
    """AdamW steps with linear decay over `total` steps; with `masks`, pruned weights stay zero (recovery)."""

    def __init__(self, model: torch.nn.Module, batches: Iterator[Any], lr: float, total: int,
                 masks: dict[str, torch.Tensor] | None = None):
        self.model, self.batches, self.total, self.masks, self.done = model, batches, max(1, total), masks, 0
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: max(0.0, 1 - s / self.total))
        self.losses: list[float] = []

    def step(self, n: int) -> None:
        params = dict(self.model.named_parameters())
        self.model.train()
        for _ in range(n):
            loss = batch_loss(self.model, next(self.batches))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.masks:
                with torch.no_grad():
                    for name, keep in self.masks.items():
                        params[name].mul_(keep)
            self.losses.append(float(loss.detach()))
            self.done += 1
        self.model.eval()


def keep_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """1 where a block Linear's weight is non-zero: what masked recovery keeps trainable."""
    from ..models.blocks import named_block_linears

    return {f"{name}.weight": (m.weight != 0).to(m.weight.dtype)
            for _, linears in named_block_linears(model) for name, m in linears.items()}
