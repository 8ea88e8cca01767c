"""kenprune: prune transformer models (KEN, Wanda, SparseGPT, N:M, allocation, structured) and measure it.

The public API mirrors the CLI: `kenprune eval` is `kenprune.evaluate_model`, and so on.
Heavy imports (torch, transformers) happen on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load": "kenprune.assets.models:load_model",
    "load_model": "kenprune.assets.models:load_model",
    "save_model": "kenprune.assets.models:save_model",
    "MODELS": "kenprune.assets.models:MODELS",
    "CORPORA": "kenprune.assets.corpora:CORPORA",
    "load_documents": "kenprune.assets.corpora:load_documents",
    "PerplexityProtocol": "kenprune.protocol:PerplexityProtocol",
    "perplexity": "kenprune.evaluate:perplexity",
    "accuracy": "kenprune.evaluate:accuracy",
    "evaluate_model": "kenprune.api:evaluate_model",
    "KenpruneError": "kenprune.errors:KenpruneError",
    "write_report": "kenprune.report.build:write_report",
    "write_viz": "kenprune.report.build:write_viz",
    "ken_viz": "kenprune.report.kenviz:ken_viz",
    "finetune": "kenprune.finetuning:finetune",
    "ken_prune": "kenprune.ken.api:ken_prune",
    "ken_apply": "kenprune.ken.api:ken_apply",
    "structured_prune": "kenprune.structured.api:structured_prune",
    "recover": "kenprune.structured.api:recover",
    "measure_latency": "kenprune.latency:measure_latency",
    "prune": "kenprune.workflow:prune",
    "METHODS": "kenprune.methods:METHODS",
    "save_sparse": "kenprune.formats:save_sparse",
    "load_sparse": "kenprune.formats:load_sparse",
    "load_sparse_model": "kenprune.formats:load_sparse_model",
    "find_blocks": "kenprune.engine:find_blocks",
    "capture_block_inputs": "kenprune.engine:capture_block_inputs",
    "sequential_blocks": "kenprune.engine:sequential_blocks",
    "calibration_windows": "kenprune.pruning:calibration_windows",
    "prune_model": "kenprune.pruning:prune_model",
    "pruned_copy": "kenprune.pruning:pruned_copy",
    "layer_scores": "kenprune.pruning:layer_scores",
    "sparsity_report": "kenprune.pruning:sparsity_report",
    "search_allocation": "kenprune.allocate.api:search_allocation",
    "resolve_allocation": "kenprune.allocate:resolve_allocation",
    "ALLOCATORS": "kenprune.allocate:ALLOCATORS",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'kenprune' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
