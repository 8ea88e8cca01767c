"""KEN on a (pre-trained, fine-tuned) pair of loaded models: the optimized model and its subnetwork.

Pre-trained side of a classifier: a pre-trained encoder has no classification head, so KEN's base
for a classifier is the fine-tuned model's own starting point, which `kenprune finetune` saves as
`<finetuned>/initial` (backbone + the head initialisation). It is a normal model folder with a
weights hash, so the subnetwork file can name it and `ken apply` can check it. When --pretrained
is left out, the fine-tuned folder's record supplies it (`initial/`, else the base model's name).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from .. import __version__, provenance
from ..errors import KenpruneError
from ..measure import path_bytes
from .apply import KenSelection, KSpec, check_compatible, differing, select_masks, select_tensors, unique_parameters
from .select import as_rows
from .subnetwork import VALUE_DTYPES, Subnetwork


def default_pretrained(finetuned_record: dict, finetuned_source: str) -> str:
    """The pre-trained side recorded by `kenprune finetune`: its saved initial model, else its base."""
    initial = finetuned_record.get("initial")
    if initial and (Path(finetuned_source) / initial).is_dir():
        return str(Path(finetuned_source) / initial)
    base = finetuned_record.get("base", {}).get("name")
    if base:
        return base
    raise KenpruneError(f"{finetuned_source} does not record its pre-trained model; pass --pretrained")


def finetuned_bytes(loaded) -> int:
    """Bytes of the fine-tuned model's safetensors on disk (its in-memory size if it has no folder)."""
    files = sorted(Path(loaded.source).glob("*.safetensors")) if Path(loaded.source).is_dir() else []
    if files:
        return sum(path_bytes(f) for f in files)
    params, _ = unique_parameters(loaded.model)
    return sum(p.numel() * p.element_size() for p in params.values())


def load_pair(pretrained: str | None, finetuned: str):
    """Load (pre-trained, fine-tuned) with the fine-tuned model's task; refuse a head-less classifier base."""
    from ..models.loading import SEQUENCE_CLASSIFICATION, _task_of_folder, load_model, resolve_model

    ft = load_model(finetuned)
    pretrained = pretrained or default_pretrained(ft.record, ft.source)
    if ft.task == SEQUENCE_CLASSIFICATION:
        _, source, _ = resolve_model(pretrained)
        if Path(source).is_dir() and _task_of_folder(source) != SEQUENCE_CLASSIFICATION:
            raise KenpruneError(
                f"{pretrained} has no classification head, so KEN's pre-trained side would be a random one; "
                f"use the fine-tuned model's initial state: --pretrained {Path(ft.source) / 'initial'} "
                f"(kenprune finetune saves it)")
    pre = load_model(pretrained, task=ft.task)
    return pre, ft


@dataclass
class KenRun:
    optimized: torch.nn.Module
    subnetwork: Subnetwork
    selection: KenSelection
    finetuned_params: dict[str, torch.Tensor]


def ken_models(pre, ft, k: KSpec | int | float | str = 0.25, *, kernel: str = "gaussian", tensors: str = "all",
               include: Iterable[str] = (), exclude: Iterable[str] = (), value_dtype: str = "fp32",
               selection: str = "ken", seed: int = 0, allocation: str | None = None,
               progress: bool = True) -> KenRun:
    """KEN on two loaded models in memory (inputs untouched): the optimized model and its subnetwork.

    selection: a ROW_SELECTIONS name (`kenprune.ken.selections`): KEN (default, the paper), `ken-delta`,
    or a baseline with the same kept count per row (random, delta, dare, finetuned); seed: random ones'.
    allocation: an allocator spec (`global`, `owl`, `er`, ...) that spreads the fractional k over the
    tensors by |fine-tuned - pre-trained| (`kenprune.ken.allocation`); None: the same k in every row.
    """
    from .selections import ROW_SELECTIONS, kept_values

    pre_params, aliases = unique_parameters(pre.model)
    ft_params, _ = unique_parameters(ft.model)
    check_compatible(pre_params, ft_params)
    names = select_tensors(list(ft_params), tensors, include, exclude)
    if not names:
        raise KenpruneError("the tensor selection matches no tensor; check --tensors/--include/--exclude")
    chooser = ROW_SELECTIONS.get(selection)
    per_tensor, allocated = k, None
    if allocation is not None:
        from .allocation import allocate_k

        per_tensor, allocated = allocate_k(pre_params, ft_params, names, k, allocation)
    generator = torch.Generator().manual_seed(seed)
    scores = ft_params if chooser.on == "finetuned" else {n: chooser.scores(pre_params[n], ft_params[n]) for n in names}
    chosen = select_masks(scores, names, per_tensor, kernel=kernel, progress=progress,
                          mask_fn=None if chooser.name == "ken" else
                          lambda rows, kk: chooser.choose(rows, kk, kernel=kernel, generator=generator))
    del scores
    copied = differing(pre_params, ft_params, [n for n in ft_params if n not in chosen.masks])
    dtype = VALUE_DTYPES[value_dtype]
    sub = Subnetwork(masks=chosen.masks,
                     values={n: kept_values(pre_params[n].detach(), ft_params[n].detach(), m, chosen.k_row[n],
                                            as_rows(m).shape[1], chooser.rescale).to(dtype)
                             for n, m in chosen.masks.items()},
                     full={n: ft_params[n].detach().to(dtype) for n in copied}, rows=chosen.rows)
    optimized = copy.deepcopy(pre.model)
    sub.apply_to(unique_parameters(optimized)[0])
    spec = KSpec.parse(k)
    sub.meta = {
        "kenprune_version": __version__, "base": pre.identity(), "finetuned": ft.identity(),
        "optimized_sha256": provenance.model_sha256(optimized), "k": {"value": spec.value, "fraction": spec.fraction},
        "allocation": None if allocated is None else allocated.to_dict(),
        "kernel": kernel, "method": selection, "seed": seed if chooser.seeded else None,
        "selection": {"tensors": tensors, "include": list(include), "exclude": list(exclude)},
        "aliases": aliases, "copied": copied,
    }
    return KenRun(optimized, sub, chosen, ft_params)


IDENTITY_CHECKS = (("weights_sha256", "weights sha256"), ("labels", "label names"),
                   ("tokenizer_sha256", "tokenizer sha256"), ("config_sha256", "config sha256"))


def check_base(loaded, recorded: dict, given: str) -> None:
    """Refuse a base that is not the one the subnetwork was made from: weights, config, tokenizer and label
    names (each as far as the file records it; files from before these were recorded check weights only)."""
    identity = loaded.identity()
    for key, what in IDENTITY_CHECKS:
        if key not in recorded or recorded[key] == identity.get(key):
            continue
        mine, theirs = identity.get(key), recorded[key]
        show = (lambda v: provenance.short(v)) if key.endswith("sha256") else (lambda v: v)
        raise KenpruneError(f"base model {given} ({what} {show(mine)}) is not the model this subnetwork was made "
                            f"from: {recorded.get('name')} ({what} {show(theirs)})")


def rebuild(base_model: torch.nn.Module, sub: Subnetwork) -> torch.nn.Module:
    """The optimized model from its base and a subnetwork, in place on `base_model` (checks names/shapes)."""
    params, _ = unique_parameters(base_model)
    for name, mask in {**sub.masks, **sub.full}.items():
        if name not in params or params[name].shape != mask.shape:
            raise KenpruneError(f"the base model has no tensor {name} of shape {tuple(mask.shape)}")
    sub.apply_to(params)
    return base_model
