"""`kenprune prune` end to end: load, calibrate, prune, evaluate, save both files, report.

Every input is checked before the model is loaded, and the output folder appears only when
everything in it is written (model/ as a Hugging Face folder, model.sparse.safetensors,
report.json).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .. import provenance
from ..errors import KenpruneError
from ..fileio import atomic_dir, write_json
from ..measure import StageTimer, path_bytes, peak_rss_bytes
from ..engine.elementwise import Sparsity
from ..evaluate.protocol import CALIBRATION_BATCH

SPARSE_FILE = "model.sparse.safetensors"
REPORT_FILE = "report.json"
MODEL_DIR = "model"
SPARSE_DTYPES = {"same": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _check(method: str, sparsity: Sparsity | None, pattern: str | None, nsamples: int, seqlen: int,
           calib: str, eval: str | None, sparse_dtype: str) -> tuple[Any, Sparsity]:
    from ..data.corpora import parse_data_ref
    from ..methods import METHODS, Pattern, check_sparsity

    spec = METHODS.get(method)
    parsed = Pattern.parse(pattern)
    if parsed.is_nm:
        if sparsity is not None and not isinstance(sparsity, Mapping) and float(sparsity) != parsed.sparsity:
            raise KenpruneError(f"pattern {parsed} fixes the sparsity at {parsed.sparsity:g}; drop --sparsity "
                                f"or pass --sparsity {parsed.sparsity:g}")
        sparsity = parsed.sparsity
    elif sparsity is None:
        sparsity = 0.5
    elif not isinstance(sparsity, Mapping):
        sparsity = check_sparsity(sparsity)
    if nsamples < 1 or seqlen < 2:
        raise KenpruneError(f"--nsamples must be >= 1 and --seqlen >= 2, got {nsamples} and {seqlen}")
    parse_data_ref(calib, default_split="calib")
    if eval:
        parse_data_ref(eval)
    if sparse_dtype not in SPARSE_DTYPES:
        raise KenpruneError(f"unknown --sparse-dtype {sparse_dtype!r}; choose one of: {', '.join(SPARSE_DTYPES)}")
    return spec, sparsity


def _perplexity(loaded: Any, data: str, seqlen: int, windows: int | None, progress: bool) -> dict[str, Any]:
    from ..evaluate import perplexity
    from ..evaluate.protocol import PerplexityProtocol

    result = perplexity(loaded, PerplexityProtocol(data=data, seqlen=seqlen, max_windows=windows),
                        progress=progress, identify=False).to_dict()
    return {"perplexity": result["perplexity"], "protocol": result["protocol"], "seconds": result["seconds"]}


def _file_sizes(model: torch.nn.Module, root: Path, sparse: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Bytes on disk of both files, and the dense size of the same tensors at the sparse file's dtype."""
    itemsize = {None: None, "float16": 2, "bfloat16": 2, "float32": 4}[sparse["dtype"]]
    seen: set[int] = set()
    dense_same_dtype = 0
    for t in model.state_dict().values():
        if t.untyped_storage().data_ptr() in seen:
            continue
        seen.add(t.untyped_storage().data_ptr())
        dense_same_dtype += t.numel() * (itemsize if itemsize and t.is_floating_point() else t.element_size())
    linears = report["block_linears"]
    size = itemsize or next(model.parameters()).element_size()
    payload = (linears["parameters"] - linears["zeros"]) * size + linears["parameters"] / 8
    return {
        "dense_folder_bytes": path_bytes(root / MODEL_DIR),
        "sparse_file_bytes": sparse["bytes"],
        "dense_tensor_bytes_same_dtype": dense_same_dtype,
        "sparse_vs_dense_same_dtype": sparse["bytes"] / dense_same_dtype,
        "block_linears_bitmask_ratio": payload / (linears["parameters"] * size),
        "sparse_encoding": sparse,
    }


def prune(model: str = "smollm2-135m", *, method: str = "wanda", sparsity: Sparsity | None = None,
          pattern: str | None = None, group: str | None = None, calib: str = "wiki:calib", nsamples: int = 128,
          seqlen: int = 512, seed: int = 0, out: str | Path | None = None, eval: str | None = None,
          eval_windows: int | None = None, include_embeddings: bool = False, sparse_dtype: str = "same",
          batch_size: int = CALIBRATION_BATCH, device: str | None = None, allocation: str | None = None,
          eval_before: bool = True, progress: bool = True) -> dict[str, Any]:
    """Prune a model element-wise (magnitude/wanda/sparsegpt; unstructured or N:M) and report it.

    sparsity: one ratio (default 0.5) or per-layer ratios (block index or Linear name -> ratio);
    an N:M pattern fixes it at N/M. eval: `corpus:split` for perplexity before (unless
    `eval_before=False`) and after, on `eval_windows` windows of `seqlen`. out: folder for model/,
    model.sparse.safetensors and report.json. allocation: how the sparsity is spread over layers (`uniform`, `global`, `er`,
    `er-plus`, `owl`, `dsa:FUNCTION` or a `kenprune search` best.json); ratios go in the report.
    Returns the report.
    """
    from ..models.loading import load_model, save_model
    from ..formats import save_sparse
    from ..methods import Pattern
    from ..engine.elementwise import calibration_windows, prune_model

    spec, sparsity = _check(method, sparsity, pattern, nsamples, seqlen, calib, eval, sparse_dtype)
    parsed = Pattern.parse(pattern)
    if allocation is not None:
        from ..allocate import check_allocation

        if parsed.is_nm or isinstance(sparsity, Mapping):
            raise KenpruneError("--allocation spreads one --sparsity over layers; drop --pattern N:M or the ratios")
        check_allocation(allocation)
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model)
    windows = None
    if spec.statistic != "none":  # tokenized before the weights are first read (hashed below): the
        with timer.stage("calibration_data"):  # tokenizer's transient buffers and the weights never peak together
            windows = calibration_windows(loaded.tokenizer, calib, nsamples=nsamples, seqlen=seqlen, seed=seed)
    with timer.stage("identify"):
        identity = loaded.identity()
    report: dict[str, Any] = {"model": identity, "method": method, "pattern": str(parsed),
                              "sparsity_target": sparsity if not isinstance(sparsity, Mapping) else
                              {str(k): v for k, v in sparsity.items()}}
    if windows is not None:
        report["calibration"] = {"data": calib, "nsamples": nsamples, "seqlen": seqlen, "seed": seed,
                                 "tokens": nsamples * seqlen, "sampling": "uniform random windows, no BOS"}
    if eval and eval_before:
        with timer.stage("eval_before"):
            report["before"] = _perplexity(loaded, eval, seqlen, eval_windows, progress)
    if allocation is not None:
        from ..allocate import resolve_allocation
        from ..allocate.model import layer_source

        with timer.stage("allocate"):
            chosen = resolve_allocation(allocation, layer_source(loaded.model, windows, method=method,
                                                                 progress=progress), sparsity)
        report["allocation"] = chosen.to_dict()
        sparsity = chosen.ratios
    with timer.stage("prune"), loaded.tokenizer_released():
        result = prune_model(loaded.model, windows, method=method, sparsity=sparsity, pattern=parsed, group=group,
                             include_embeddings=include_embeddings, device=device, batch_size=batch_size,
                             progress=progress)
    report.update(result)
    if eval:
        with timer.stage("eval_after"):
            report["after"] = _perplexity(loaded, eval, seqlen, eval_windows, progress)
    report.update(provenance.record())
    if out is not None:
        with timer.stage("save"), atomic_dir(out) as tmp:
            save_model(loaded, tmp / MODEL_DIR, {"base": identity, "pruning": {k: report[k] for k in
                                                  ("method", "pattern", "sparsity_target")}})
            sparse = save_sparse(loaded.model, tmp / SPARSE_FILE, nm=(parsed.n, parsed.m) if parsed.is_nm else None,
                                 dtype=SPARSE_DTYPES[sparse_dtype])
            sparse["path"] = SPARSE_FILE
            report["files"] = _file_sizes(loaded.model, tmp, sparse, report)
            write_json(tmp / REPORT_FILE, _measured(report, timer))
    return _measured(report, timer)


def _measured(report: dict[str, Any], timer: StageTimer) -> dict[str, Any]:
    report["seconds"] = dict(timer.seconds)
    report["peak_rss_bytes"] = peak_rss_bytes()
    report["peak_rss_bytes_after_stage"] = dict(timer.peak_rss)
    if torch.cuda.is_available():
        report["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return report
