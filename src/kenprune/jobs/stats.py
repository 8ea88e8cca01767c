"""`kenprune stats export|merge` and the federated branch of `kenprune prune` (kenprune.federated).

export: on a client, the statistics a method needs, from the client's own calibration windows on the
dense model, written as OUT/stats.safetensors (sums and counts, never text) with run.json (kind
`stats`). merge: at the server, several statistics files into one (weighting tokens or equal).
`federated_prune`: what `kenprune prune --clients ...` (per-block rounds) or `--stats FILE...` (one
round, from files) runs in place of the centralized calibration.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


from ..errors import KenpruneError
from ..measure import StageTimer, path_bytes
from ..record import FileEntry, RunRecord
from ..settings import DEFAULT_MODEL, Calibration, FederatedSettings, Output, given
from .common import check_output, new_record, output_folder, write_record

DENSE_MODE_TEXT = ("one round: statistics of the dense model (block k fed the dense prefix, not the pruned one), "
                   "so not the centralized engine's result; per-block rounds (--clients) are")


def client_ref(data: str) -> str:
    """A client's CORPUS[:SPLIT] with the calibration split as the default."""
    from ..data.corpora import parse_data_ref

    return str(parse_data_ref(data, default_split="calib"))


def client_data(tokenizer: Any, data: str, calibration: Calibration) -> Any:
    """One client's calibration windows (the Calibration's count, length and seed) with their identity."""
    from ..data.windows import calibration_windows
    from ..federated.rounds import ClientData

    ref = client_ref(data)
    windows = calibration_windows(tokenizer, ref, nsamples=calibration.samples, seqlen=calibration.seqlen,
                                  seed=calibration.seed)
    return ClientData(windows, ref, calibration.seed)


def _stats_record(operation: str, model: dict[str, Any], method: str, given_: dict[str, Any],
                  resolved: dict[str, Any], meta: dict[str, Any]) -> RunRecord:
    record = new_record("stats", model, method, given_, resolved)
    record.details.update({"operation": operation, "statistic": meta["statistic"], "mode": meta["mode"],
                           "mode_text": DENSE_MODE_TEXT, "clients": meta["clients"], "weighting": meta.get("weighting"),
                           "tokens": sum(c["tokens"] for c in meta["clients"]), "blocks": meta["blocks"]})
    return record


def _write(record: RunRecord, layers: Any, meta: dict[str, Any], output: Output, timer: StageTimer) -> RunRecord:
    """OUT/stats.safetensors and OUT/run.json, atomically."""
    from ..federated.files import STATS_FILE, save_stats

    with output_folder(output) as tmp:
        with timer.stage("save"):
            save_stats(tmp / STATS_FILE, layers, meta)
        record.files = [FileEntry(STATS_FILE, "kenprune-stats", path_bytes(tmp / STATS_FILE), "statistics")]
        write_record(record, tmp, timer)
    return record


def export(model: str = DEFAULT_MODEL, method: str = "wanda", *, calibration: Calibration = Calibration(),
           output: Output = Output(), progress: bool = True) -> RunRecord:
    """A client's statistics for `method` from its calibration data on the dense model -> OUT/stats.safetensors."""
    from ..engine.sequential import resolve_device
    from ..federated.rounds import calibrated_method, collect_dense
    from ..models.blocks import find_blocks
    from ..models.loading import load_model, load_tokenizer
    from ..precision import resolve_dtype

    if output.folder is None:
        raise KenpruneError("kenprune stats export needs --out DIR: the folder for the statistics file")
    spec = calibrated_method(method)
    calibration.check()
    check_output(output, [model])
    timer = StageTimer()
    with timer.stage("calibration_data"):
        client = client_data(load_tokenizer(model), calibration.data, calibration)
    with timer.stage("load"):
        loaded = load_model(model)
    with timer.stage("identify"):
        identity = loaded.identity()
    precision = resolve_dtype(calibration.dtype, resolve_device(None))
    with timer.stage("statistics"), loaded.tokenizer_released():
        layers = collect_dense(loaded.model, client.windows, spec.statistic, batch_size=calibration.batch_size,
                               dtype=precision.dtype, progress=progress)
    meta = {"model": identity, "statistic": spec.statistic, "method": method, "mode": "dense",
            "blocks": len(find_blocks(loaded.model)[1]), "clients": [client.identity()], "weighting": None}
    record = _stats_record("export", identity, method, given(model=model, method=method, calibration=calibration),
                           {"calibration": {**calibration.to_dict(), "data": client.data, "dtype": precision.dtype},
                            "method": method}, meta)
    return _write(record, layers, meta, output, timer)


def load_many(sources: Sequence[str | Path], *, model: dict[str, Any] | None = None, statistic: str | None = None,
              method: str | None = None) -> tuple[list[dict], list[dict]]:
    """Statistics files (or their folders), checked against each other and the model/statistic when given."""
    from ..federated.files import check_compatible, load_stats, read_meta

    if not sources:
        raise KenpruneError("no statistics files given")
    metas = [read_meta(s) for s in sources]  # every header checked before any tensor is read
    check_compatible(metas, [str(s) for s in sources], model=model, statistic=statistic, method=method)
    return [load_stats(s)[0] for s in sources], metas


def _merged_meta(metas: Sequence[dict], weighting: str) -> dict[str, Any]:
    from ..federated.stats import client_weights

    clients = [c for m in metas for c in m["clients"]]
    if len(metas) > 1:
        weights = client_weights([sum(c["tokens"] for c in m["clients"]) for m in metas], weighting)
        for m, w in zip(metas, weights):  # a file's share, spread over the clients it already merged
            total = sum(c["tokens"] for c in m["clients"])
            for c in m["clients"]:
                c["weight"] = w * (c.get("weight", c["tokens"] / total))
    return {**{k: v for k, v in metas[0].items() if k not in ("names", "tokens", "format", "version")},
            "clients": clients, "weighting": weighting if len(metas) > 1 else metas[0].get("weighting")}


def merge(sources: Sequence[str | Path], *, weighting: str = "tokens", output: Output = Output(),
          progress: bool = True) -> RunRecord:
    """Several statistics files into one (their sums: `tokens`, exactly the union's; or `equal` shares)."""
    from ..federated.stats import merge_layers

    if output.folder is None:
        raise KenpruneError("kenprune stats merge needs --out DIR: the folder for the merged statistics file")
    check_output(output, list(sources))
    FederatedSettings(stats=tuple(str(s) for s in sources), weighting=weighting).check()
    timer = StageTimer()
    with timer.stage("load"):
        parts, metas = load_many(sources)
    with timer.stage("merge"):
        merged = merge_layers(parts, weighting)
    meta = _merged_meta(metas, weighting)
    record = _stats_record("merge", metas[0]["model"], meta["method"], given(stats=[str(s) for s in sources],
                                                                            weighting=weighting),
                           {"weighting": weighting, "sources": [str(s) for s in sources]}, meta)
    return _write(record, merged, meta, output, timer)


def federated_prune(loaded: Any, federated: FederatedSettings, clients: Sequence[Any], *, method: str,
                    sparsity: Any, pattern: Any, group: str | None, calibration: Calibration, dtype: str | None,
                    progress: bool = True, stream: Any = None, files: tuple | None = None) -> dict[str, Any]:
    """The federated branch of `kenprune prune`: rounds over `clients` (ClientData), or the statistics files;
    `stream`: the streamed path's PruneStream (a model bigger than memory); `files`: `merged_files`' result when
    the allocation already read them."""
    from ..federated.rounds import agreement_summary, calibrated_method, prune_from_stats, prune_rounds

    if federated.clients:
        return prune_rounds(loaded.model, clients, method=method, sparsity=sparsity, pattern=pattern, group=group,
                            weighting=federated.weighting, workers=federated.workers,
                            ray_address=federated.ray_address, model_ref=loaded.source,
                            agreement=federated.agreement, batch_size=calibration.batch_size, dtype=dtype,
                            progress=progress, stream=stream)
    spec = calibrated_method(method)
    parts, metas, merged = files or merged_files(loaded, federated, method)
    alone = parts if federated.agreement and len(parts) > 1 else ()
    report = prune_from_stats(loaded.model, merged, method=method, sparsity=sparsity, pattern=pattern, group=group,
                              alone=alone, progress=progress, stream=stream)
    meta = _merged_meta(metas, federated.weighting)
    per_layer = report.pop("agreement_layers")
    sources = [{"name": str(s), "tokens": sum(c["tokens"] for c in m["clients"])}
               for s, m in zip(federated.stats, metas)]
    report["federated"] = {
        "mode": "dense", "mode_text": DENSE_MODE_TEXT, "executor": "files", "workers": None, "ray_address": None,
        "weighting": meta["weighting"], "clients": meta["clients"], "files": [str(s) for s in federated.stats],
        "tokens": sum(c["tokens"] for c in meta["clients"]),
        "agreement": agreement_summary(per_layer, {n: p["parameters"] for n, p in
                                                    ((x["name"], x) for x in report["layers"])}, sources)
        if alone else None}
    return report


def merged_files(loaded: Any, federated: FederatedSettings, method: str) -> tuple[list[dict], list[dict], dict]:
    """The statistics files (checked against the model and the method), their metadata and their merge."""
    from ..federated.rounds import calibrated_method
    from ..federated.stats import merge_layers

    spec = calibrated_method(method)
    parts, metas = load_many(federated.stats, model=loaded.identity(), statistic=spec.statistic, method=method)
    return parts, metas, parts[0] if len(parts) == 1 else merge_layers(parts, federated.weighting)


def federated_layer_source(loaded: Any, federated: FederatedSettings, clients: Sequence[Any], *, method: str,
                           calibration: Calibration, dtype: str | None, progress: bool = True
                           ) -> tuple[Any, dict[str, Any]]:
    """For `resolve_allocation` under federated calibration: the layers, scored (when the allocator needs scores)
    from the clients' merged statistics of the dense model, never from their text: a dense round of per-block
    rounds (--clients), or the statistics files (--stats). Returns the source and what it did (filled in when
    it runs); `done["files"]`, once read, is handed on to `federated_prune`."""
    from ..allocate.model import model_layers
    from ..federated.rounds import score_rounds, stats_scores

    done: dict[str, Any] = {}

    def source(needs_scores: bool) -> list[Any]:
        if not needs_scores:
            return model_layers(loaded.model)
        if federated.clients:
            scores, done["scoring"] = score_rounds(
                loaded.model, clients, method=method, weighting=federated.weighting, workers=federated.workers,
                ray_address=federated.ray_address, model_ref=loaded.source, batch_size=calibration.batch_size,
                dtype=dtype, progress=progress)
        else:
            done["files"] = merged_files(loaded, federated, method)
            scores = stats_scores(loaded.model, done["files"][2], method=method)
            done["scoring"] = {"mode": "files", "what": "the merged statistics files (the dense model's) -> the "
                                                        "method's scores"}
        return model_layers(loaded.model, scores)

    return source, done


def federated_windows(model: str, federated: FederatedSettings, calibration: Calibration) -> list[Any]:
    """Each client's windows (rounds mode), before the model loads: a bad request fails in seconds."""
    from ..models.loading import load_tokenizer

    if not federated.clients:
        return []
    tokenizer = load_tokenizer(model)
    return [client_data(tokenizer, data, calibration) for data in federated.clients]


__all__ = ["export", "merge", "federated_prune", "federated_windows", "federated_layer_source", "merged_files",
           "client_data"]
