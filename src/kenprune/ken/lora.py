"""LoRA at equal stored bytes: the paper's PEFT comparison, sized so the adapter file holds as many bytes
as a KEN subnetwork file.

A LoRA adapter of rank r on a Linear of shape (out, in) stores r * (in + out) values (A: r x in,
B: out x r); a classifier also stores its trained head whole (peft's modules_to_save). The file is
safetensors: those values at 4 bytes (fp32) plus a small JSON header. `rank_for_bytes` is the largest
rank whose values fit the budget; `adapter_bytes` measures what peft actually wrote.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from ..errors import KenpruneError

HEAD_MODULES = ("classifier",)  # sequence classifiers (BERT family): trained whole beside the adapters
HEADER_BYTES_PER_TENSOR = 160  # the safetensors JSON header's entry per tensor (name, dtype, shape, offsets), generous


def lora_shapes(model: torch.nn.Module, targets: Iterable[str]) -> list[tuple[int, int]]:
    """(out, in) of every Linear whose name ends with one of `targets` (peft's matching), heads excluded."""
    targets = tuple(targets)
    return [(m.out_features, m.in_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in targets
            and not any(name.startswith(h) or f".{h}" in name for h in HEAD_MODULES)]


def lora_values(shapes: Iterable[tuple[int, int]], rank: int) -> int:
    """Values a rank-`rank` adapter stores on Linears of these (out, in) shapes."""
    return sum(rank * (o + i) for o, i in shapes)


def rank_for_bytes(shapes: list[tuple[int, int]], budget_bytes: int, *, extra_bytes: int = 0,
                   bytes_per_value: int = 4) -> int:
    """The largest rank whose adapter values (plus `extra_bytes`, e.g. a head stored whole) fit the budget."""
    per_rank = lora_values(shapes, 1) * bytes_per_value
    if per_rank == 0:
        raise KenpruneError("no Linear module matches the LoRA targets")
    rank = math.floor((budget_bytes - extra_bytes) / per_rank)
    if rank < 1:
        raise KenpruneError(f"{budget_bytes:,} bytes do not hold even a rank-1 adapter "
                            f"({per_rank + extra_bytes:,} bytes)")
    return rank


def header_bytes(shapes: list[tuple[int, int]]) -> int:
    """An upper estimate of the adapter file's JSON header: two tensors (A, B) per adapted Linear."""
    return 2 * len(shapes) * HEADER_BYTES_PER_TENSOR + 1024


def head_bytes(model: torch.nn.Module, bytes_per_value: int = 4) -> int:
    """Bytes of the modules a classifier adapter stores whole (its head)."""
    return sum(p.numel() * bytes_per_value for name, p in model.named_parameters()
               if name.split(".")[0] in HEAD_MODULES)


def train_lora(loaded, batches: Iterator[Any], *, rank: int, targets: Iterable[str], steps: int, lr: float,
               seed: int = 0, classifier: bool = False, progress: bool = True,
               save_to: str | Path | None = None) -> dict[str, Any]:
    """Train a rank-`rank` LoRA adapter on `batches` (the fine-tune's own batches: (inputs, labels) for a
    classifier, token windows for a causal LM), write it (to `save_to`, else a temporary folder) to
    measure its file, merge it into loaded.model."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=list(targets),
                        modules_to_save=list(HEAD_MODULES) if classifier else None,
                        task_type="SEQ_CLS" if classifier else "CAUSAL_LM")
    model = get_peft_model(loaded.model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)
    losses = []
    for _ in tqdm(range(steps), desc=f"LoRA r={rank}", disable=not progress, leave=False):
        batch = next(batches)
        if classifier:
            inputs, labels = batch
            loss = model(**inputs, labels=labels).loss
        else:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    with (tempfile.TemporaryDirectory() if save_to is None else contextlib.nullcontext(save_to)) as folder:
        model.save_pretrained(folder)
        stored = sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))
    loaded.model = model.merge_and_unload().eval()
    loaded._sha256 = None
    return {"rank": rank, "adapter_bytes": stored, "trainable_parameters": sum(p.numel() for p in params),
            "steps": steps, "lr": lr, "loss_first": losses[0], "loss_last": losses[-1]}
