"""`kenprune ken lora`: the paper's PEFT comparison as a command: LoRA at the bytes of a KEN subnetwork.

The adapter trains on the fine-tune's own data, steps, batch size, sequence length and seed (read from
the fine-tuned folder's run.json, so its batches are the very ones the fine-tune drew), starting from
KEN's base (a classifier's `initial/`, whose head LoRA trains whole). Its rank is the largest whose
safetensors file fits the budget: a KEN run's subnetwork file, or a byte count. The record holds the
adapter's bytes beside the budget and the same quality entries as `kenprune ken`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import KenpruneError
from ..measure import StageTimer, path_bytes
from ..record import FileEntry, RunRecord
from ..settings import KEN_EVALUATION, Evaluation, KenLoraSettings, Output, given
from .common import check_output, new_record, output_folder, write_record
from .ken import MODEL_DIR, SUBNETWORK_FILE, judge

ADAPTER_DIR = "adapter"


def budget_of(match: str | Path) -> tuple[int, str]:
    """Bytes of a KEN subnetwork file, given the file or the KEN run folder that wrote it."""
    from ..record import read

    path = Path(match)
    if path.is_dir():
        record = read(path)
        entry = record.file("subnetwork")
        if record.kind != "ken" or entry is None:
            raise KenpruneError(f"{path} is a {record.kind} run, not a KEN run with a subnetwork file")
        path = path / entry.path
    if not path.is_file():
        raise KenpruneError(f"{path} is not a file; give a KEN run folder or its {SUBNETWORK_FILE}")
    return path.stat().st_size, str(path)


def finetune_recipe(ft) -> dict[str, Any]:
    """The fine-tune's data, steps, batch size, sequence length and seed, from its folder's run.json."""
    from ..record import RecordError, read

    try:
        record = read(Path(ft.source))
    except RecordError:
        record = None
    if record is None or record.kind != "finetune":
        raise KenpruneError(f"{ft.source} has no `kenprune finetune` record; the LoRA comparison trains on the "
                            f"fine-tune's own data and steps, so the fine-tuned model must come from kenprune finetune")
    d = record.details
    return {"data": d["data"]["train"], "steps": d["steps"], "batch_size": d["batch_size"], "seqlen": d["seqlen"],
            "seed": d["seed"]}


def default_targets(model: torch.nn.Module) -> tuple[str, ...]:
    """The last name part of every nn.Linear inside the transformer blocks (peft matches on it)."""
    from ..models.blocks import find_blocks

    _, blocks = find_blocks(model)
    return tuple(sorted({name.split(".")[-1] for block in blocks for name, m in block.named_modules()
                         if isinstance(m, torch.nn.Linear)}))


def run(finetuned: str, settings: KenLoraSettings, *, pretrained: str | None = None,
        evaluation: Evaluation = KEN_EVALUATION, output: Output = Output(), progress: bool = True) -> RunRecord:
    """Train the equal-bytes LoRA adapter; OUT/adapter (peft's folder), OUT/model with settings.save_model."""
    from ..ken.lora import head_bytes, header_bytes, lora_shapes, lora_values, rank_for_bytes, train_lora
    from ..ken.pair import load_pair
    from ..models.loading import SEQUENCE_CLASSIFICATION, save_model

    if not finetuned:
        raise KenpruneError("give the fine-tuned model: --finetuned FOLDER")
    settings.check()
    evaluation.check()
    check_output(output, [finetuned, pretrained, settings.match])
    budget, budget_source = (budget_of(settings.match) if settings.match is not None
                             else (settings.bytes, "--bytes") if settings.bytes is not None else (None, "--rank"))
    timer = StageTimer()
    with timer.stage("load"):
        pre, ft = load_pair(pretrained, finetuned)
        recipe = finetune_recipe(ft)
        base = copy_loaded(pre)
    classifier = ft.task == SEQUENCE_CLASSIFICATION
    targets = settings.targets or default_targets(base.model)
    shapes = lora_shapes(base.model, targets)
    extra = head_bytes(base.model) if classifier else 0
    rank = settings.rank or rank_for_bytes(shapes, budget, extra_bytes=extra + header_bytes(shapes))  # file <= budget
    batches = recipe_batches(base, recipe, classifier)
    record = new_record("ken-lora", ft.identity(), "lora",
                        given(finetuned=finetuned, pretrained=pretrained, lora=settings, evaluation=evaluation),
                        {"lora": {**settings.to_dict(), "targets": list(targets), "rank": rank},
                         "finetune": recipe, "pretrained": pre.source, "evaluation": evaluation.to_dict()})
    with output_folder(output) as tmp:
        with timer.stage("train"):
            info = train_lora(base, batches, rank=rank, targets=targets, steps=recipe["steps"], lr=settings.lr,
                              seed=recipe["seed"], classifier=classifier, progress=progress,
                              save_to=None if tmp is None else tmp / ADAPTER_DIR)
        base._sha256 = None
        if tmp is not None:
            record.files.append(FileEntry(ADAPTER_DIR, "peft-adapter", path_bytes(tmp / ADAPTER_DIR), "adapter"))
            if settings.save_model:
                with timer.stage("save"):
                    save_model(base, tmp / MODEL_DIR, {"ken-lora": {"adapter": ADAPTER_DIR, "base": pre.identity()}})
                record.files.append(FileEntry(MODEL_DIR, "hf-folder", path_bytes(tmp / MODEL_DIR), "model"))
        if evaluation.enabled:
            with timer.stage("eval"):
                judge(record, base, f"LoRA r={rank}", pre, ft, evaluation, progress)
        total = sum(p.numel() for p in ft.model.parameters())
        record.details.update({
            **info, "targets": list(targets), "budget_bytes": budget, "budget_source": budget_source,
            "adapter_values": lora_values(shapes, rank), "head_values": extra // 4,
            "stored_fraction": info["trainable_parameters"] / total, "finetune": recipe,
            "pretrained": pre.identity(), "finetuned": ft.identity(),
        })
        write_record(record, tmp, timer)
    return record


def recipe_batches(loaded, recipe: dict[str, Any], classifier: bool):
    """The fine-tune's own endless batches (same data, batch size, length and seed) for `loaded`."""
    from ..data.corpora import join_text, load_documents, tokenize_stream
    from .finetune import _batches_causal, _batches_classification

    gen = torch.Generator().manual_seed(recipe["seed"])
    docs = load_documents(recipe["data"])
    if classifier:
        labels = [lab for lab, _ in sorted(loaded.model.config.label2id.items(), key=lambda kv: kv[1])]
        return _batches_classification(loaded, docs, labels, recipe["batch_size"], recipe["seqlen"], gen)
    return _batches_causal(tokenize_stream(loaded.tokenizer, join_text(docs)), recipe["batch_size"],
                           recipe["seqlen"], gen)


def copy_loaded(loaded):
    """A deep copy of a loaded model (LoRA merges into it; the pre-trained side stays the reference)."""
    import copy

    from ..models.loading import LoadedModel

    return LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.name, loaded.source, loaded.task,
                       loaded.bos)


def ken_lora(finetuned: str, *, pretrained: str | None = None, evaluation: Evaluation = KEN_EVALUATION,
             out: str | Path | None = None, overwrite: bool = False, progress: bool = True, **options) -> RunRecord:
    """`run` with KenLoraSettings as keywords, e.g. `ken_lora("ft/", match="ken25/", out="lora25/")`."""
    return run(finetuned, KenLoraSettings(**options), pretrained=pretrained, evaluation=evaluation,
               output=Output(out, overwrite), progress=progress)
