"""`kenprune prune`: load, calibrate, prune element-wise, evaluate, save both files, record the run.

Every setting is checked before the model is loaded, and the output folder appears only when
everything in it is written: model/ (a Hugging Face folder), model.sparse.safetensors, run.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import KenpruneError
from ..measure import StageTimer, path_bytes
from ..record import FileEntry, Layer, RunRecord
from ..settings import DEFAULT_MODEL, Calibration, Evaluation, FederatedSettings, Output, PruneSettings, given
from .common import check_output, new_record, output_folder, write_record

SPARSE_FILE = "model.sparse.safetensors"
MODEL_DIR = "model"
SPARSE_DTYPES = {"same": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _file_sizes(model: torch.nn.Module, root: Path, sparse: dict[str, Any],
                block_linears: dict[str, Any]) -> dict[str, Any]:
    """Bytes on disk of both files, and the dense size of the same tensors at the sparse file's dtype."""
    itemsize = {None: None, "float16": 2, "bfloat16": 2, "float32": 4}[sparse["dtype"]]
    seen: set[int] = set()
    dense_same_dtype = 0
    for t in model.state_dict(keep_vars=True).values():
        key = id(t) if t.device.type == "meta" else t.untyped_storage().data_ptr()  # a streamed skeleton: by tensor
        if key in seen:
            continue
        seen.add(key)
        dense_same_dtype += t.numel() * (itemsize if itemsize and t.is_floating_point() else t.element_size())
    size = itemsize or next(model.parameters()).element_size()
    payload = (block_linears["parameters"] - block_linears["zeros"]) * size + block_linears["parameters"] / 8
    return {
        "dense_folder_bytes": path_bytes(root / MODEL_DIR),
        "sparse_file_bytes": sparse["bytes"],
        "dense_tensor_bytes_same_dtype": dense_same_dtype,
        "sparse_vs_dense_same_dtype": sparse["bytes"] / dense_same_dtype,
        "block_linears_bitmask_ratio": payload / (block_linears["parameters"] * size),
    }


def _layer_table(report: dict[str, Any], allocated: Mapping[str, float] | None) -> list[Layer]:
    return [Layer(x["name"], x["shape"], x["sparsity"], x["block"],
                  None if allocated is None else allocated.get(x["name"]), x["parameters"])
            for x in report["layers"]]


def run(model: str = DEFAULT_MODEL, settings: PruneSettings = PruneSettings(), *,
        calibration: Calibration = Calibration(), evaluation: Evaluation = Evaluation(),
        output: Output = Output(), progress: bool = True,
        federated: FederatedSettings = FederatedSettings()) -> RunRecord:
    """Prune a model element-wise (magnitude/wanda/sparsegpt; unstructured or N:M) and record it.

    settings.sparsity: one ratio (default 0.5) or per-layer ratios (block index or Linear name ->
    ratio); an N:M pattern fixes it at N/M; settings.allocation spreads one ratio over the layers.
    evaluation.data: perplexity before (unless evaluation.before is False) and after, under the
    evaluation protocol (never the calibration's). federated: calibrate on clients' data in per-block
    rounds, or prune from statistics files (kenprune.federated; jobs/stats.py). Returns the record
    (written to output.folder/run.json).
    """
    from ..data.windows import windows_for
    from ..engine.elementwise import prune_model
    from ..evaluate import evaluate, evaluate_tasks
    from ..formats import save_sparse
    from ..methods import METHODS, Pattern
    from ..models.lazy import folder_sha256
    from ..models.loading import load_model, load_tokenizer, save_model
    from ..provenance import model_sha256
    from ..precision import resolve_dtype
    from ..engine.sequential import resolve_device
    from .prune_stream import StreamedPrune, check_streamable, memory_plan

    settings.check()
    evaluation.check()
    spec = METHODS.get(settings.method)
    if spec.statistic != "none":
        calibration.check()
    fed = federated.check() if federated.enabled else None
    if fed is not None and settings.include_embeddings:
        raise KenpruneError("--include-embeddings with federated calibration is not supported yet; drop one of them")
    check_output(output, [model, settings.allocation, *federated.stats])
    memory, lazy = memory_plan(model, settings)  # streamed when the whole model would not fit (settings.max_memory)
    if lazy is not None:
        check_streamable(settings, evaluation, fed)
    parsed = Pattern.parse(settings.pattern)
    sparsity = settings.resolved_sparsity()
    timer = StageTimer()
    windows = None
    clients: list = []
    if fed is not None:
        from .stats import federated_windows

        with timer.stage("calibration_data"):
            clients = federated_windows(model, fed, calibration)
    elif spec.statistic != "none":  # before the weights load: a too-large request fails in seconds, and the
        with timer.stage("calibration_data"):  # tokenizer's transient buffers and the weights never peak together
            windows = windows_for(load_tokenizer(model), calibration)
    with timer.stage("load"):
        loaded = lazy.loaded() if lazy is not None else load_model(model)
    with timer.stage("identify"):
        identity = loaded.identity()
    precision = resolve_dtype(calibration.dtype, resolve_device(settings.device))
    resolved = {"prune": {**settings.to_dict(), "sparsity": sparsity if not isinstance(sparsity, Mapping) else
                          {str(k): v for k, v in sparsity.items()}, "pattern": str(parsed),
                          "group": settings.group or spec.default_group},
                "evaluation": evaluation.to_dict()}
    if windows is not None or clients:
        resolved["calibration"] = {**calibration.to_dict(), "dtype": precision.dtype,
                                   **({"data": ",".join(c.data for c in clients)} if clients else {})}
    if fed is not None:
        resolved["federated"] = fed.to_dict()
    record = new_record("prune", identity, settings.method,
                        given(model=model, prune=settings, calibration=calibration, evaluation=evaluation,
                              federated=fed), resolved)
    streamed = None
    if lazy is not None:  # a checkpoint beside the output: a killed run continues from its last block
        same_run = {"model": identity["weights_sha256"], "calibration": resolved.get("calibration"),
                    "prune": {k: v for k, v in resolved["prune"].items() if k not in ("max_memory", "stream")},
                    **({"federated": resolved["federated"]} if "federated" in resolved else {})}
        streamed = StreamedPrune(lazy, output, same_run,
                                 memory, nm=(parsed.n, parsed.m) if parsed.is_nm else None,
                                 sparse_dtype=SPARSE_DTYPES[settings.sparse_dtype])
        loaded.device, loaded.activation_budget, loaded.spill_dir = \
            settings.device, memory["activation_budget_bytes"], streamed.folder / "spill"
    if evaluation.enabled and evaluation.before:
        with timer.stage("eval_before"):
            record.quality.append(evaluate(loaded, evaluation, role="before", label="dense", progress=progress))
    if evaluation.tasks_enabled and evaluation.before:
        with timer.stage("tasks_before"):
            record.quality += evaluate_tasks(loaded, evaluation, role="before", label="dense", progress=progress)
    allocated = fed_files = fed_scoring = None
    if settings.allocation is not None:
        from ..allocate import resolve_allocation
        from ..allocate.model import layer_source

        with timer.stage("allocate"):
            if fed is not None:  # scores from the clients' merged statistics of the dense model
                from .stats import federated_layer_source

                source, scored = federated_layer_source(loaded, fed, clients, method=settings.method,
                                                        calibration=calibration, dtype=precision.dtype,
                                                        progress=progress)
            elif streamed is not None:  # a dense pass one block at a time, the scores in files until chosen
                source = streamed.layer_source(windows, method=settings.method, batch_size=calibration.batch_size,
                                               dtype=precision.dtype, progress=progress)
            else:
                source = layer_source(loaded.model, windows, method=settings.method, progress=progress,
                                      dtype=precision.dtype, batch_size=calibration.batch_size)
            chosen = resolve_allocation(settings.allocation, source, sparsity)
            if fed is not None:
                fed_files, fed_scoring = scored.get("files"), scored.get("scoring")
            if streamed is not None:
                streamed.drop_scores()
        record.details["allocation"] = chosen.to_dict()
        sparsity = allocated = chosen.ratios
    with timer.stage("prune"), loaded.tokenizer_released():
        if fed is not None:
            from .stats import federated_prune

            report = federated_prune(loaded, fed, clients, method=settings.method, sparsity=sparsity, pattern=parsed,
                                     group=settings.group, calibration=calibration, dtype=precision.dtype,
                                     progress=progress, stream=streamed.stream if streamed else None,
                                     files=fed_files)
            record.details["federated"] = report.pop("federated")
            if fed_scoring:
                record.details["federated"]["allocation_scores"] = fed_scoring
        else:
            report = prune_model(loaded.model, windows, method=settings.method, sparsity=sparsity, pattern=parsed,
                                 group=settings.group, include_embeddings=settings.include_embeddings,
                                 device=settings.device, batch_size=calibration.batch_size, progress=progress,
                                 dtype=precision.dtype, stream=streamed.stream if streamed else None)
    record.details["memory"] = streamed.details() if streamed else memory
    record.layer_quantity = "sparsity"
    record.layers = _layer_table(report, allocated)
    record.details.update({"sparsity": report["block_linears"]["sparsity"],
                           "target": resolved["prune"]["sparsity"] if allocated is None else
                           record.details["allocation"]["target"],
                           "pattern": str(parsed), "group": resolved["prune"]["group"],
                           "block_linears": report["block_linears"], "overall": report["overall"],
                           "include_embeddings": settings.include_embeddings})
    if windows is not None or clients:
        record.details["calibration"] = {**calibration.to_dict(), "dtype": precision.dtype,
                                         **({"data": ",".join(c.data for c in clients)} if clients else {}),
                                         "tokens": calibration.samples * calibration.seqlen * max(1, len(clients)),
                                         "sampling": "uniform random windows, no BOS"}
        record.details["precision"] = {**precision.to_dict(), "statistics": "float32",
                                       "weights": str(next(loaded.model.parameters()).dtype).replace("torch.", "")}
    if streamed is not None:  # the output is assembled from the written blocks, then evaluated from there
        with timer.stage("save"):
            sparse = streamed.assemble(loaded.tokenizer, {"bos": loaded.bos, **_model_record(identity, settings, parsed,
                                                                                            resolved)},
                                       MODEL_DIR, SPARSE_FILE)
    after = loaded
    if streamed is not None and (evaluation.enabled or evaluation.tasks_enabled):  # opened once for both
        with timer.stage("eval_after" if evaluation.enabled else "tasks_after"):
            after = streamed.pruned(MODEL_DIR)
            after.device = settings.device
    if evaluation.enabled:
        with timer.stage("eval_after"):
            record.quality.append(evaluate(after, evaluation, role="after", label="pruned", progress=progress))
    if evaluation.tasks_enabled:  # streamed: every request scored block by block (evaluate/streamed_lm.py)
        with timer.stage("tasks_after"):
            record.quality += evaluate_tasks(after, evaluation, role="after", label="pruned", progress=progress)
    with output_folder(output) as tmp:
        if tmp is not None:
            with timer.stage("save"):
                if streamed is not None:
                    streamed.move_into(tmp)
                    record.details["weights_sha256"] = folder_sha256(tmp / MODEL_DIR)  # read back, a tensor at a time
                else:
                    save_model(loaded, tmp / MODEL_DIR, _model_record(identity, settings, parsed, resolved))
                    record.details["weights_sha256"] = model_sha256(loaded.model)
                    sparse = save_sparse(loaded.model, tmp / SPARSE_FILE,
                                         nm=(parsed.n, parsed.m) if parsed.is_nm else None,
                                         dtype=SPARSE_DTYPES[settings.sparse_dtype])
                record.details["sizes"] = _file_sizes(loaded.model, tmp, sparse, report["block_linears"])
                record.details["sparse_encoding"] = sparse
                record.files = [FileEntry(MODEL_DIR, "hf-folder", path_bytes(tmp / MODEL_DIR), "model"),
                                FileEntry(SPARSE_FILE, "sparse-safetensors", sparse["bytes"], "sparse")]
        write_record(record, tmp, timer)
    if streamed is not None:
        streamed.cleanup()  # the output is complete: the checkpoint has served
    return record


def _model_record(identity: dict[str, Any], settings: PruneSettings, parsed: Any, resolved: dict[str, Any]
                  ) -> dict[str, Any]:
    """kenprune.json of the pruned model folder: its base and how it was pruned."""
    return {"base": identity, "pruning": {"method": settings.method, "pattern": str(parsed),
                                          "sparsity_target": resolved["prune"]["sparsity"]}}


def prune(model: str = DEFAULT_MODEL, *, calibration: Calibration = Calibration(),
          evaluation: Evaluation = Evaluation(), out: str | Path | None = None, overwrite: bool = False,
          progress: bool = True, federated: FederatedSettings = FederatedSettings(), **options: Any) -> RunRecord:
    """`run` with PruneSettings given as keywords, e.g. `prune("smollm2-135m", method="sparsegpt", pattern="2:4")`;
    `federated=FederatedSettings(clients=("wiki", "lee"))` calibrates on clients' data in rounds."""
    return run(model, PruneSettings(**options), calibration=calibration, evaluation=evaluation,
               output=Output(out, overwrite), progress=progress, federated=federated)
