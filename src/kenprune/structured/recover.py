"""Recovery with LoRA (peft), merged back so the result is a plain dense model again (LLM-Pruner 6.3)."""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..data.corpora import join_text, load_documents, tokenize_stream
from ..errors import KenpruneError
from ..models.families import adapter_for
from ..models.loading import LoadedModel
from .batches import batch_loss, is_classifier, training_items
from ..settings import LoraSettings


def training_windows(loaded: LoadedModel, data: str, settings: LoraSettings) -> torch.Tensor:
    """Non-overlapping windows of the training text in a seeded random order."""
    tokens = tokenize_stream(loaded.tokenizer, join_text(load_documents(data)))
    n = tokens.numel() // settings.seqlen
    if n == 0:
        raise KenpruneError(f"{data} has {tokens.numel()} tokens, fewer than one window of {settings.seqlen}; "
                            f"lower --seqlen")
    windows = tokens[: n * settings.seqlen].view(n, settings.seqlen)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))
    return windows[order]


def train_steps(model: torch.nn.Module, param_groups: list[dict[str, Any]], batches: Sequence[Any],
                settings: LoraSettings, *, desc: str = "LoRA", penalty: Callable[[], torch.Tensor] | None = None,
                progress: bool = True) -> dict[str, Any]:
    """`settings.steps` AdamW steps of the model's loss (+ `penalty()`), one of `batches` per step (wrapping
    around): token windows [batch, seqlen] train a causal LM on themselves, labelled dicts a classifier
    (batches.training_items makes either); the losses' summary."""
    optimizer = torch.optim.AdamW(param_groups, lr=settings.lr, weight_decay=0.0)
    device = next(model.parameters()).device
    losses, penalties = [], []
    for step in tqdm(range(settings.steps), desc=desc, unit="step", disable=not progress, leave=False):
        loss = batch_loss(model, batches[step % len(batches)], device)
        if not math.isfinite(loss.item()):
            raise KenpruneError(f"{desc} loss became {loss.item()} at step {step}; lower the learning rate")
        total = loss
        if penalty is not None:
            extra = penalty()
            penalties.append(extra.item())
            total = loss + extra
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(loss.item())
    tenth = max(1, len(losses) // 10)
    summary = {"loss_first": losses[0], "loss_last": losses[-1], "loss_first_tenth": sum(losses[:tenth]) / tenth,
               "loss_last_tenth": sum(losses[-tenth:]) / tenth}
    if penalties:
        summary.update(penalty_first=penalties[0], penalty_last=penalties[-1])
    return summary


def lora_recover(loaded: LoadedModel, data: str = "lee", settings: LoraSettings = LoraSettings(), *,
                 progress: bool = True, gates: Any = None) -> dict[str, Any]:
    """Fine-tune LoRA adapters on `data`, merge them into the weights of `loaded.model` (replaced).

    `gates` (polarize.GateSet): also train its gates, attached to the wrapped model, under its penalty.
    A classifier trains on labelled batches of `data` (or of the split it was fine-tuned on, when `data` is not
    labelled) with its classification loss; peft's SEQ_CLS task keeps its head (classifier) fully trainable,
    since a head fitted to the unpruned features is what pruning disturbs most, and merges it back.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise KenpruneError("LoRA recovery needs peft; run `pip install 'kenprune[recover]'`") from None
    settings.check()
    adapter = adapter_for(loaded.model)
    data, batches = training_items(loaded, data, settings)
    torch.manual_seed(settings.seed)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(adapter.lora_modules()), fan_in_fan_out=adapter.fan_in_fan_out,
                        task_type="SEQ_CLS" if is_classifier(loaded) else "CAUSAL_LM")
    peft_model = get_peft_model(loaded.model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": params}]
    detach = None
    if gates is not None:
        groups.append({"params": gates.parameters(), "lr": gates.lr})
        detach = gates.attach(peft_model)
    try:
        summary = train_steps(peft_model, groups, batches, settings, desc="LoRA" if gates is None else "gates+LoRA",
                              penalty=None if gates is None else gates.penalty, progress=progress)
    finally:
        if detach is not None:
            detach()
    loaded.model = peft_model.merge_and_unload().eval()
    loaded._sha256 = None
    return {**asdict(settings), "data": data, "trainable_parameters": sum(p.numel() for p in params), **summary}
