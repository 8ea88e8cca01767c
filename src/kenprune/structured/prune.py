"""The structured-pruning pipeline on a loaded model: groups -> importance -> plan -> removal."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..data.windows import calibration_windows
from ..models.blocks import find_blocks
from ..models.families import structured_adapter_for
from ..models.loading import LoadedModel
from .groups import block_groups
from .importance import IMPORTANCE, collect_gradients, unit_scores
from .plan import PrunePlan, plan_keep
from .removal import BlockWidths, apply_widths, block_widths, count_parameters, remove_units


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

    def to_dict(self) -> dict[str, Any]:
        return {"importance": self.importance, "plan": asdict(self.plan), "attention_unit": self.attention_unit,
                "parameters_before": self.parameters_before, "parameters_after": self.parameters_after,
                "block_parameters_before": self.block_parameters_before,
                "block_parameters_after": self.block_parameters_after,
                "block_parameters_removed": 1 - self.block_parameters_after / self.block_parameters_before,
                "uniform_widths": len(set(self.widths_after)) == 1,
                "widths_before": [asdict(w) for w in self.widths_before],
                "widths_after": [asdict(w) for w in self.widths_after], "calibration": self.calibration}


def prune_structured(loaded: LoadedModel, plan: PrunePlan, *, importance: str = "taylor",
                     attention_unit: str = "auto", calib: str = "wiki:calib", nsamples: int = 10,
                     seqlen: int = 128, seed: int = 0, blocks_per_pass: int | None = None,
                     windows: torch.Tensor | None = None, progress: bool = True) -> StructuredResult:
    """Remove the least important heads and MLP channels of `loaded.model` in place.

    Every check (family, ratio, head counts) runs before the first weight changes. `windows`: the
    calibration windows when the caller already cut them (else they come from calib/nsamples/seqlen/seed).
    """
    model = loaded.model
    adapter = structured_adapter_for(model)
    estimator = IMPORTANCE.get(importance)
    n_blocks = len(find_blocks(model)[1])
    plan.check(n_blocks)
    groups = block_groups(model, attention_unit, adapter)
    before = block_widths(model, adapter)
    plan_keep(groups, [torch.zeros(g.units) for g in groups], plan, n_blocks)  # bad ratios fail before any work
    params_before, block_params_before = count_parameters(model), count_parameters(model, blocks_only=True)
    calibration: dict[str, Any] = {}
    stats = None
    pruned = set(plan.pruned_blocks(n_blocks))
    if estimator.gradients and plan.ratio > 0:
        if windows is None:
            windows = calibration_windows(loaded.tokenizer, calib, nsamples=nsamples, seqlen=seqlen, seed=seed)
        calibration = {"data": calib, "nsamples": nsamples, "seqlen": seqlen, "seed": seed}
        stats = collect_gradients(model, [g for g in groups if g.block in pruned], windows,
                                  second_order=estimator.gradients >= 2, blocks_per_pass=blocks_per_pass,
                                  progress=progress)
    scored = [g for g in groups if g.block in pruned] if stats is not None else groups
    scores_by_group = dict(zip(map(id, scored), unit_scores(scored, importance, stats, seed)))
    scores = [scores_by_group.get(id(g), torch.zeros(g.units, dtype=torch.float64)) for g in groups]
    keep = plan_keep(groups, scores, plan, n_blocks)
    with torch.no_grad():
        remove_units(groups, keep)
    after = block_widths(model, adapter)
    apply_widths(model, after, adapter)
    loaded._sha256 = None
    unit = groups[0].unit if groups else attention_unit
    return StructuredResult(importance, plan, unit, before, after, params_before, count_parameters(model),
                            block_params_before, count_parameters(model, blocks_only=True), calibration)
