"""Element-wise pruning methods: one module each, one interface (kenprune.methods.base.Method).

`METHODS.get(name)` gives a Method: `.statistic` (what calibration it needs), `.score(W, stats)`
(element-wise importance, higher = keep) and `.prune(W, stats, sparsity=, pattern=, group=)`.
"""
from __future__ import annotations

from ..registry import Registry
from . import magnitude, sparsegpt, wanda
from .base import HESSIAN, NO_STATISTIC, NORMS, InputStats, Method, PruneResult
from .patterns import Pattern, check_sparsity, nm_mask, select, unstructured_mask

METHODS: Registry[Method] = Registry("method")
for _module in (magnitude, wanda, sparsegpt):
    METHODS.add(_module.METHOD.name, _module.METHOD, _module.METHOD.description)

__all__ = ["METHODS", "Method", "InputStats", "PruneResult", "Pattern", "check_sparsity", "select",
           "unstructured_mask", "nm_mask", "NO_STATISTIC", "NORMS", "HESSIAN"]
