"""The structured-pruning pipeline on a loaded model: groups -> importance -> plan -> removal."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from ..models.blocks import find_blocks
from ..models.families import structured_adapter_for
from ..models.loading import LoadedModel
from ..errors import KenpruneError
from ..settings import LoraSettings
from .activations import collect_spreads
from .batches import calibration_items, is_classifier
from .groups import Group, block_groups
from .importance import IMPORTANCE, collect_gradients, unit_scores
from .polarize import GateSet
from .recover import lora_recover
from .stability import selection_stability
from .plan import PrunePlan, plan_keep
from .removal import WIDTHS_KEY, BlockWidths, apply_widths, block_widths, count_parameters, remove_units


@dataclass
class StructuredResult:
    importance: str
    plan: PrunePlan
    attention_unit: str
    widths_before: list[BlockWidths]
    widths_after: list[BlockWidths]
    parameters_before: int
    parameters_after: int
    block_parameters_before: int
    block_parameters_after: int
    calibration: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # beta, stability, gate training (when they apply)
    loader: str = "transformers"  # what reloads the saved folder: plain from_pretrained, or kenprune.load


    def to_dict(self) -> dict[str, Any]:
        return {"importance": self.importance, "plan": asdict(self.plan), "attention_unit": self.attention_unit,
                "parameters_before": self.parameters_before, "parameters_after": self.parameters_after,
                "block_parameters_before": self.block_parameters_before,
                "block_parameters_after": self.block_parameters_after,
                "block_parameters_removed": 1 - self.block_parameters_after / self.block_parameters_before,
                "uniform_widths": len(set(self.widths_after)) == 1, "loader": self.loader,
                "widths_before": [asdict(w) for w in self.widths_before],
                "widths_after": [asdict(w) for w in self.widths_after], "calibration": self.calibration, **self.extra}


def score_units(model: torch.nn.Module, groups: list[Group], pruned: set[int], importance: str,
                windows: torch.Tensor | None, *, seed: int = 0, beta: float = 0.5, blocks_per_pass: int | None = None,
                progress: bool = True) -> list[torch.Tensor]:
    """Every group's unit scores (zeros for groups outside the pruned blocks), from `windows` where needed."""
    estimator = IMPORTANCE.get(importance)
    active = [g for g in groups if g.block in pruned]
    stats = spreads = None
    if estimator.gradients:
        stats = collect_gradients(model, active, windows, second_order=estimator.gradients >= 2,
                                  blocks_per_pass=blocks_per_pass, progress=progress)
    if estimator.activations:
        spreads = collect_spreads(model, active, windows, progress=progress)
    by_group = dict(zip(map(id, active), unit_scores(active, importance, stats, seed, spreads, beta)))
    return [by_group.get(id(g), torch.zeros(g.units, dtype=torch.float64)) for g in groups]


def prune_structured(loaded: LoadedModel, plan: PrunePlan, *, importance: str = "taylor",
                     attention_unit: str = "auto", calib: str = "wiki:calib", nsamples: int = 10,
                     seqlen: int = 128, seed: int = 0, blocks_per_pass: int | None = None,
                     windows: torch.Tensor | None = None, progress: bool = True, beta: float = 0.5,
                     stability: int = 0, train: LoraSettings | None = None, polarization: float = 1.0,
                     gate_lr: float = 0.05, clients: Sequence[Any] | None = None, weighting: str = "tokens",
                     agreement: bool = True) -> StructuredResult:
    """Remove the least important heads and MLP channels of `loaded.model` in place.

    Every check (family, ratio, head counts) runs before the first weight changes. `windows`: the
    calibration windows when the caller already cut them (else they come from calib/nsamples/seqlen/seed).
    `stability` >= 2: also select with that many calibration subsets (seeds seed, seed+1, ...) and record the
    overlap of the selections. `train`: the training of the polarization gates (LoRA, `train.data`).
    `clients` (kenprune.federated.ClientData): score from the clients' merged sums instead of `windows`
    (kenprune.federated.structured; `weighting` tokens or equal; `agreement`: each client's own selection).
    """
    model = loaded.model
    adapter = structured_adapter_for(model)
    estimator = IMPORTANCE.get(importance)
    n_blocks = len(find_blocks(model)[1])
    plan.check(n_blocks)
    groups = block_groups(model, attention_unit, adapter)
    before = block_widths(model, adapter)
    plan_keep(groups, [torch.zeros(g.units) for g in groups], plan, n_blocks)  # bad ratios fail before any work
    if clients is not None:
        from ..federated.structured import check_importance

        check_importance(importance, stability)
        if estimator.gradients and is_classifier(loaded):
            raise KenpruneError(f"--clients with --importance {importance} on a classifier is not supported (its "
                                f"loss needs labelled batches); use beta-rank, or a causal LM")
    if estimator.trained and train is None:
        raise KenpruneError(f"--importance {importance} learns its gates while training; give --steps N")
    if estimator.trained and stability:
        raise KenpruneError(f"--stability is not available for --importance {importance} (it would train N times)")
    params_before, block_params_before = count_parameters(model), count_parameters(model, blocks_only=True)
    calibration: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    pruned = set(plan.pruned_blocks(n_blocks)) if plan.ratio > 0 else set()
    active = [i for i, g in enumerate(groups) if g.block in pruned]
    if estimator.trained:
        gates = GateSet([groups[i] for i in active], 1 - plan.ratio, weight=polarization, lr=gate_lr)
        extra["training"] = {"kind": "gates+LoRA", **lora_recover(loaded, train.data, train, progress=progress,
                                                                   gates=gates)}
        gates.fold()
        by_group = dict(zip(active, (v.detach().double() for v in gates.values())))
        scores = [by_group.get(i, torch.zeros(g.units, dtype=torch.float64)) for i, g in enumerate(groups)]
        keep = plan_keep(groups, scores, plan, n_blocks)
        extra["gates"] = {"weight": polarization, "lr": gate_lr, **gates.summary([keep[i] for i in active])}
    elif clients is not None:  # federated: the clients' merged sums (kenprune.federated.structured)
        from ..federated.structured import federated_keep

        keep, extra["federated"] = federated_keep(model, groups, pruned, plan, n_blocks, importance, clients,
                                                  weighting=weighting, seed=seed, beta=beta,
                                                  blocks_per_pass=blocks_per_pass, agreement=agreement,
                                                  progress=progress)
        if pruned:
            calibration = {"data": ",".join(c.data for c in clients), "nsamples": nsamples, "seqlen": seqlen,
                           "seed": seed, **({"loss": "language-modelling"} if estimator.gradients else {})}
    else:
        labelled = is_classifier(loaded) and bool(estimator.gradients)  # a classifier's loss needs labels
        used = calib

        def select(run: int, cut: Any) -> list[torch.Tensor]:
            nonlocal used
            if estimator.calibrated and pruned and cut is None:
                used, cut = calibration_items(loaded, calib, nsamples=nsamples, seqlen=seqlen, seed=seed + run,
                                              labelled=labelled)
            scores = score_units(loaded.model, groups, pruned, importance, cut, seed=seed + run, beta=beta,
                                 blocks_per_pass=blocks_per_pass, progress=progress)
            return plan_keep(groups, scores, plan, n_blocks)

        keep = select(0, windows)
        if estimator.calibrated and pruned:
            calibration = {"data": used, "nsamples": nsamples, "seqlen": seqlen, "seed": seed}
            if estimator.gradients:
                calibration["loss"] = "classification" if labelled else "language-modelling"
        if stability >= 2 and pruned:
            selections = [[k[i] for i in active] for k in [keep] + [select(r, None) for r in range(1, stability)]]
            extra["stability"] = {"seeds": list(range(seed, seed + stability)),
                                  **selection_stability(selections, [groups[i].units for i in active])}
    if importance == "beta-rank":
        extra["beta"] = beta
    with torch.no_grad():
        remove_units(groups, keep)
    model = loaded.model
    after = block_widths(model, adapter)
    apply_widths(model, after, adapter)
    loaded._sha256 = None
    unit = groups[0].unit if groups else attention_unit
    return StructuredResult(importance, plan, unit, before, after, params_before, count_parameters(model),
                            block_params_before, count_parameters(model, blocks_only=True), calibration, extra,
                            "kenprune" if getattr(model.config, WIDTHS_KEY, None) else "transformers")
