"""kenprune: prune transformer models (KEN, Wanda, SparseGPT, N:M, allocation, structured) and measure it.

The public API mirrors the CLI: `kenprune prune` is `kenprune.prune`, `kenprune structured` is
`kenprune.structured`, `kenprune eval` is `kenprune.evaluate_model`, and so on; each returns the run record.
Heavy imports (torch, transformers) happen on first use.
"""
from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

_EXPORTS = {
    "load": "kenprune.models.loading:load_model",
    "load_model": "kenprune.models.loading:load_model",
    "save_model": "kenprune.models.loading:save_model",
    "MODELS": "kenprune.models.loading:MODELS",
    "CORPORA": "kenprune.data.corpora:CORPORA",
    "load_documents": "kenprune.data.corpora:load_documents",
    "PerplexityProtocol": "kenprune.evaluate.protocol:PerplexityProtocol",
    "perplexity": "kenprune.evaluate:perplexity",
    "accuracy": "kenprune.evaluate:accuracy",
    "evaluate_model": "kenprune.jobs.eval:evaluate_model",
    "evaluate": "kenprune.evaluate:evaluate",
    "EVALUATORS": "kenprune.evaluate:EVALUATORS",
    "KenpruneError": "kenprune.errors:KenpruneError",
    "write_report": "kenprune.report.build:write_report",
    "write_viz": "kenprune.report.build:write_viz",
    "ken_viz": "kenprune.report.kenviz:ken_viz",
    "finetune": "kenprune.jobs.finetune:finetune",
    "ken": "kenprune.jobs.ken:ken",
    "ken_apply": "kenprune.jobs.ken:apply",
    "ken_lora": "kenprune.jobs.ken_lora:ken_lora",
    "structured": "kenprune.jobs.structured:structured_prune",
    "recover": "kenprune.jobs.recover:recover",
    "measure_latency": "kenprune.evaluate.latency:measure_latency",
    "prune": "kenprune.jobs.prune:prune",
    "METHODS": "kenprune.methods:METHODS",
    "save_sparse": "kenprune.formats:save_sparse",
    "load_sparse": "kenprune.formats:load_sparse",
    "load_sparse_model": "kenprune.formats:load_sparse_model",
    "find_blocks": "kenprune.engine:find_blocks",
    "capture_block_inputs": "kenprune.engine:capture_block_inputs",
    "sequential_blocks": "kenprune.engine:sequential_blocks",
    "calibration_windows": "kenprune.data.windows:calibration_windows",
    "prune_model": "kenprune.engine.elementwise:prune_model",
    "pruned_copy": "kenprune.engine.elementwise:pruned_copy",
    "layer_scores": "kenprune.engine.elementwise:layer_scores",
    "sparsity_report": "kenprune.engine.elementwise:sparsity_report",
    "search": "kenprune.jobs.search:search_allocation",
    "read_run": "kenprune.record:read",
    "RunRecord": "kenprune.record:RunRecord",
    **{name: f"kenprune.settings:{name}" for name in ("Calibration", "Evaluation", "Output", "PruneSettings",
                                                       "StructuredSettings", "KenSettings", "SearchSettings",
                                                       "LoraSettings", "KenLoraSettings", "FinetuneSettings")},
    "resolve_allocation": "kenprune.allocate:resolve_allocation",
    "ALLOCATORS": "kenprune.allocate:ALLOCATORS",
    "prune_tokens": "kenprune.jobs.tokens:prune_tokens",
    "apply_token_pruning": "kenprune.tokens.patch:apply_token_pruning",
    "remove_token_pruning": "kenprune.tokens.patch:remove_token_pruning",
    "TokenSettings": "kenprune.settings:TokenSettings",
    "stats_export": "kenprune.jobs.stats:export",
    "stats_merge": "kenprune.jobs.stats:merge",
    "FederatedSettings": "kenprune.settings:FederatedSettings",
    "phase_map": "kenprune.jobs.phase_map:phase_map",
    "PhaseMapSettings": "kenprune.settings:PhaseMapSettings",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'kenprune' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # a subpackage of the same name (kenprune.ken, kenprune.structured): imported first, so that no later
        # import of it rebinds `kenprune.NAME` from the function to the package
        importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
