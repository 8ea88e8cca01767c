"""Federated calibration: clients keep their windows, the server prunes from merged statistics.

The engine is sequential: block k is calibrated on the outputs of the already pruned blocks 0..k-1.
Federated pruning equal to the centralized run therefore goes in per-block rounds:

    round k: every client runs its own activations through block k-1 (now pruned, weights sent by
             the server), collects block k's input statistics (sums and counts) and sends them;
             the server merges them (`stats.merge`) and prunes block k.

Only statistics leave a client (and pruned weights reach it); never text or activations. Clients
run in this process (`workers` 1; they share the server's model, whose pruned blocks they need
anyway) or as Ray actors, each loading its own copy of the model (local workers, or a cluster at
`ray_address`). `prune_from_stats` is the one-round alternative for separate processes: every
block pruned from statistics a client computed on the dense model (`collect_dense`), which is not
the centralized run (block k's inputs come from the dense prefix), and the record says so.

Per-client agreement: at each layer, the mask the client's statistics alone would give (on the
same pruned prefix) against the merged mask: the share of weights with the same keep/prune decision.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..engine.elementwise import layer_targets, sparsity_report
from ..engine.sequential import capture_block_inputs, sequential_blocks
from ..errors import KenpruneError
from ..methods import METHODS, NO_STATISTIC, Method, Pattern
from ..models.blocks import block_linears, find_blocks, linear_weight, set_linear_weight
from ..settings import Calibration, Sparsity
from .stats import ShardStats, client_weights, merge_layers

STREAMED_RAY_REFUSAL = ("a streamed federated prune runs its clients in this process (Ray workers would each load the "
                        "whole model); use --workers 1, or --stream off")


@dataclass
class ClientData:
    """One client's private calibration windows [n, seqlen] and where they came from (never their text)."""

    windows: torch.Tensor
    data: str = "private"
    seed: int | None = None
    name: str | None = None

    def identity(self) -> dict[str, Any]:
        w = self.windows.contiguous()
        return {"name": self.name or self.data, "data": self.data, "windows": int(w.shape[0]),
                "seqlen": int(w.shape[1]), "seed": self.seed, "tokens": int(w.numel()),
                "windows_sha256": hashlib.sha256(w.to(torch.int64).numpy().tobytes()).hexdigest()}


class Client:
    """A client's side of the rounds: its windows, its pass through the blocks, its statistics.

    model: the model itself (shared with the server in-process) or a name/folder the client loads.
    """

    def __init__(self, model: nn.Module | str, windows: torch.Tensor, statistic: str, *,
                 batch_size: int = Calibration.batch_size, dtype: str | None = None, threads: int | None = None,
                 device: str | None = None):
        self.model_ref, self.windows, self.statistic = model, windows, statistic
        self.batch_size, self.dtype, self.threads, self.device = batch_size, dtype, threads, device
        self._steps: Any = None
        self._linears: dict[str, nn.Module] = {}

    def _start(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        model = self.model_ref
        if isinstance(model, str):
            from ..models.loading import load_model

            model = load_model(model).model
        inputs = capture_block_inputs(model, self.windows, batch_size=self.batch_size)
        self._steps = sequential_blocks(model, inputs, device=self.device, consume=True, progress=False,
                                        dtype=self.dtype)

    def round(self, weights: Mapping[str, torch.Tensor] | None = None) -> dict[str, ShardStats]:
        """Take the previous block's pruned weights (None: already in place), pass the activations through it,
        and return the next block's input statistics."""
        if self._steps is None:
            self._start()
        for name, weight in (weights or {}).items():
            set_linear_weight(self._linears[name], weight)
        step = next(self._steps)
        self._linears = step.linears
        return {name: s for name, s in step.collect(self.statistic, ShardStats).items()}

    def close(self) -> None:
        if self._steps is not None:
            self._steps.close()
        self._steps = None


class _LocalPool:
    def __init__(self, clients: Sequence[Client]):
        self.clients, self.name, self.workers = list(clients), "sequential", 1

    def round(self, weights: Mapping[str, torch.Tensor] | None) -> list[dict[str, ShardStats]]:
        return [c.round(None) for c in self.clients]  # they share the server's model: the weights are in place

    def close(self) -> None:
        for c in self.clients:
            c.close()


class _RayPool:
    """One Ray actor per client, `workers` CPUs shared between them."""

    def __init__(self, clients: Sequence[Client], workers: int, address: str | None):
        from ..allocate.executors import start_ray

        start_ray(workers, address)
        import ray

        self.ray, self.name, self.workers = ray, "ray", workers
        share = workers / len(clients) if not address else 1
        for c in clients:
            c.threads = max(1, int(share))
        actor = ray.remote(num_cpus=share)(Client)
        self.actors = [actor.remote(c.model_ref, c.windows, c.statistic, batch_size=c.batch_size, dtype=c.dtype,
                                    threads=c.threads) for c in clients]

    def round(self, weights: Mapping[str, torch.Tensor] | None) -> list[dict[str, ShardStats]]:
        ref = self.ray.put(dict(weights or {}))
        try:
            return self.ray.get([a.round.remote(ref) for a in self.actors])
        except Exception as exc:  # an error inside a client, or a lost actor
            raise KenpruneError(f"a federated client failed on Ray: {str(exc).splitlines()[0][:200]}") from None

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)


def calibrated_method(method: str) -> Method:
    spec = METHODS.get(method)
    if spec.statistic == NO_STATISTIC:
        raise KenpruneError(f"{method} uses no calibration data, so there is nothing to federate; "
                            f"use a calibrated method (e.g. wanda, sparsegpt)")
    return spec


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of positions where two prune masks make the same decision."""
    return float((a == b).double().mean())


def _converter() -> Callable[[ShardStats], Any]:
    """ShardStats -> the engine's InputStats, once per shared input (SparseGPT factors a shared Hessian once)."""
    converted: dict[int, Any] = {}

    def engine_stats(s: ShardStats) -> Any:
        if id(s) not in converted:
            converted[id(s)] = s.to_input_stats()
        return converted[id(s)]

    return engine_stats


def prune_block(spec: Method, linears: Mapping[str, nn.Module], targets: Mapping[str, float],
                merged: Mapping[str, ShardStats], pattern: Pattern, group: str,
                alone: Sequence[Mapping[str, ShardStats]] = ()) -> dict[str, list[float]]:
    """Prune one block's Linears from merged statistics; per Linear, each client's mask agreement when `alone`."""
    engine_stats = _converter()
    out: dict[str, list[float]] = {}
    for name, module in linears.items():
        if targets[name] <= 0:
            continue
        weight = linear_weight(module).detach()
        result = spec.prune(weight, engine_stats(merged[name]), sparsity=targets[name], pattern=pattern, group=group)
        out[name] = [agreement(spec.prune(weight, engine_stats(c[name]), sparsity=targets[name], pattern=pattern,
                                          group=group).pruned, result.pruned) for c in alone]
        set_linear_weight(module, result.weight)
    return out


def agreement_summary(per_layer: Mapping[str, list[float]], sizes: Mapping[str, int],
                       clients: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total = sum(sizes[n] for n in per_layer) or 1
    means = [sum(v[i] * sizes[n] for n, v in per_layer.items()) / total for i in range(len(clients))]
    return {"what": "share of weights whose keep/prune decision from the client's statistics alone equals the "
                    "merged one (per layer on the same prefix; parameter-weighted mean over pruned Linears)",
            "clients": {c["name"]: m for c, m in zip(clients, means)},
            "layers": {n: dict(zip((c["name"] for c in clients), v)) for n, v in per_layer.items()}}


def client_identities(clients: Sequence[ClientData], weighting: str = "tokens") -> list[dict[str, Any]]:
    """Each client's identity (never its text) with its weight; names made unique by index when two clash."""
    identities = [c.identity() for c in clients]
    clash = len({i["name"] for i in identities}) < len(identities)
    weights = client_weights([i["tokens"] for i in identities], weighting)
    return [{**i, "name": f"{k}:{i['name']}" if clash else i["name"], "weight": w}
            for k, (i, w) in enumerate(zip(identities, weights))]


def _pool(model: nn.Module, clients: Sequence[ClientData], spec: Method, *, workers: int, ray_address: str | None,
          model_ref: str | None, batch_size: int, dtype: str | None, stream: Any) -> Any:
    if workers == 1 and not ray_address:
        # in-process clients share the server's model, so they compute where it is (each would move the shared
        # blocks to and from an accelerator under the others' feet)
        return _LocalPool([Client(model, c.windows, spec.statistic, batch_size=batch_size, dtype=dtype,
                                  device="cpu" if stream is not None else str(next(model.parameters()).device))
                           for c in clients])  # a streamed skeleton's weights are on `meta` between reads
    ref = model_ref if model_ref is not None else model
    return _RayPool([Client(ref, c.windows, spec.statistic, batch_size=batch_size, dtype=dtype) for c in clients],
                    workers, ray_address)


def _run_rounds(model: nn.Module, pool: Any, weighting: str, desc: str, progress: bool,
                on_block: Callable[[int, dict[str, nn.Module], list[dict[str, ShardStats]], dict[str, ShardStats]],
                                   Mapping[str, torch.Tensor]], stream: Any = None) -> None:
    """Per block: every client's statistics of its input, their merge, and `on_block` (which may prune the block
    and returns the weights it changed: the next round sends them to clients that hold their own copy). The
    pool is closed at the end, whatever happens."""
    blocks_name, blocks = find_blocks(model)
    changed: Mapping[str, torch.Tensor] = {}
    try:
        for index, block in enumerate(tqdm(blocks, desc=desc, unit="block", disable=not progress, leave=False)):
            if stream is not None:
                stream.load(index, block)
            with stream.lazy.rest_loaded() if stream is not None and index == 0 else contextlib.nullcontext():
                parts = pool.round(changed)  # round 0: the clients capture their inputs (embeddings needed)
            linears = block_linears(block, f"{blocks_name}.{index}" if blocks_name else str(index))
            changed = on_block(index, linears, parts, merge_layers(parts, weighting))
            if stream is not None and index > 0:  # every client has passed through block index-1 now
                stream.done(index - 1, blocks[index - 1], None)
    finally:
        pool.close()  # the clients' passes end, and with them their hold on the last block
    if stream is not None:
        stream.done(len(blocks) - 1, blocks[-1], None)


def prune_rounds(model: nn.Module, clients: Sequence[ClientData], *, method: str = "wanda",
                 sparsity: Sparsity = 0.5, pattern: str | Pattern | None = None, group: str | None = None,
                 weighting: str = "tokens", workers: int = 1, ray_address: str | None = None,
                 model_ref: str | None = None, agreement: bool = True, batch_size: int = Calibration.batch_size,
                 dtype: str | None = None, progress: bool = True, stream: Any = None) -> dict[str, Any]:
    """Prune `model` in place from the clients' merged statistics, block by block (see the module docstring).

    workers 1 without ray_address: clients in this process; else Ray actors, each loading `model_ref`
    (a name or folder; default: a pickled copy of `model`). Returns the sparsity report with a
    `federated` entry: mode, executor, weighting, each client's identity and weight, agreement, timing.
    stream: a `PruneStream` (a model bigger than memory, in-process clients only): round k reads block k,
    and block k-1 is written and freed once every client has passed through it. The clients' activations
    are not checkpointed, so an interrupted run starts again from block 0.
    """
    spec = calibrated_method(method)
    if not clients:
        raise KenpruneError("federated calibration needs at least one client")
    if stream is not None and (workers != 1 or ray_address):
        raise KenpruneError(STREAMED_RAY_REFUSAL)
    if stream is not None:
        stream.restart()
    pattern = Pattern.parse(pattern)
    group = group or spec.default_group
    targets = layer_targets(model, sparsity, pattern)
    identities = client_identities(clients, weighting)
    pool = _pool(model, clients, spec, workers=workers, ray_address=ray_address, model_ref=model_ref,
                 batch_size=batch_size, dtype=dtype, stream=stream)
    per_layer: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    start = time.perf_counter()

    def prune(_index: int, linears: dict[str, nn.Module], parts: list, merged: dict) -> dict[str, torch.Tensor]:
        per_layer.update(prune_block(spec, linears, targets, merged, pattern, group, parts if agreement else ()))
        sizes.update({n: linear_weight(m).numel() for n, m in linears.items()})
        return {n: linear_weight(m).detach().clone() for n, m in linears.items() if targets[n] > 0}

    _run_rounds(model, pool, weighting, f"federated {method}", progress, prune, stream)
    report = stream.finish(False) if stream is not None else sparsity_report(model)
    report["targets"] = {"method": method, "pattern": str(pattern), "group": group,
                         "sparsity": sparsity if not isinstance(sparsity, Mapping) else "per-layer"}
    report["federated"] = {
        "mode": "rounds", "mode_text": "per-block rounds: each block pruned from statistics of the pruned prefix "
                                       "(the centralized engine's order)",
        "executor": pool.name, "workers": pool.workers, "ray_address": ray_address, "weighting": weighting,
        "clients": identities,
        "tokens": sum(i["tokens"] for i in identities), "seconds": time.perf_counter() - start,
        "agreement": agreement_summary(per_layer, sizes, identities) if agreement else None}
    return report


def score_block(spec: Method, linears: Mapping[str, nn.Module], merged: Mapping[str, ShardStats],
                reduce: Callable[[str, torch.Tensor], Any]) -> dict[str, Any]:
    """One block's element-wise scores (what an allocator reads) from merged statistics; nothing pruned."""
    engine_stats = _converter()
    return {name: reduce(name, spec.score(linear_weight(module).detach(), engine_stats(merged[name])))
            for name, module in linears.items()}


def score_rounds(model: nn.Module, clients: Sequence[ClientData], *, method: str = "wanda",
                 weighting: str = "tokens", workers: int = 1, ray_address: str | None = None,
                 model_ref: str | None = None, batch_size: int = Calibration.batch_size, dtype: str | None = None,
                 progress: bool = True, reduce: Callable[[str, torch.Tensor], Any] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every block Linear's scores from the clients' merged statistics of the dense model, in per-block rounds
    with nothing pruned (the dense scoring pass an allocation needs: OWL's outlier ratios, global's threshold),
    and what ran it. Only statistics leave a client, as in `prune_rounds`."""
    spec = calibrated_method(method)
    if not clients:
        raise KenpruneError("federated calibration needs at least one client")
    reduce = reduce or (lambda _name, s: s.cpu())
    pool = _pool(model, clients, spec, workers=workers, ray_address=ray_address, model_ref=model_ref,
                 batch_size=batch_size, dtype=dtype, stream=None)
    scores: dict[str, Any] = {}
    start = time.perf_counter()

    def score(_index: int, linears: dict[str, nn.Module], _parts: list, merged: dict) -> dict[str, torch.Tensor]:
        scores.update(score_block(spec, linears, merged, reduce))
        return {}  # nothing changed: the clients pass the dense block on

    _run_rounds(model, pool, weighting, f"federated {method} scores", progress, score)
    return scores, {"mode": "rounds", "executor": pool.name, "workers": pool.workers,
                    "seconds": time.perf_counter() - start,
                    "what": "one round per block on the dense model: merged statistics -> the method's scores"}


def stats_scores(model: nn.Module, layers: Mapping[str, ShardStats], *, method: str = "wanda",
                 reduce: Callable[[str, torch.Tensor], Any] | None = None) -> dict[str, Any]:
    """Every block Linear's scores from given (merged) statistics of the dense model: a statistics file's."""
    spec = calibrated_method(method)
    reduce = reduce or (lambda _name, s: s.cpu())
    blocks_name, blocks = find_blocks(model)
    scores: dict[str, Any] = {}
    for i, block in enumerate(blocks):
        linears = block_linears(block, f"{blocks_name}.{i}" if blocks_name else str(i))
        missing = [n for n in linears if n not in layers]
        if missing:
            raise KenpruneError(f"the statistics have no entry for {missing[0]}; were they computed on this model?")
        scores.update(score_block(spec, linears, layers, reduce))
    return scores


def collect_dense(model: nn.Module, windows: torch.Tensor, statistic: str, *,
                  batch_size: int = Calibration.batch_size, dtype: str | None = None,
                  progress: bool = True) -> dict[str, ShardStats]:
    """Every block Linear's input statistics from one pass of the dense model (block k fed the dense prefix)."""
    out: dict[str, ShardStats] = {}
    inputs = capture_block_inputs(model, windows, batch_size=batch_size)
    for step in sequential_blocks(model, inputs, recompute=False, consume=True, progress=progress,
                                  desc="statistics", dtype=dtype):
        out.update(step.collect(statistic, ShardStats))
    return out


def prune_from_stats(model: nn.Module, layers: Mapping[str, ShardStats], *, method: str = "wanda",
                     sparsity: Sparsity = 0.5, pattern: str | Pattern | None = None, group: str | None = None,
                     alone: Sequence[Mapping[str, ShardStats]] = (), progress: bool = True,
                     stream: Any = None) -> dict[str, Any]:
    """Prune `model` in place from given statistics (a merged statistics file): no calibration pass.

    alone: each client's own statistics, for the agreement of their masks with the merged ones.
    stream: a `PruneStream` (a model bigger than memory): each block read, pruned, written and freed."""
    spec = calibrated_method(method)
    pattern = Pattern.parse(pattern)
    group = group or spec.default_group
    targets = layer_targets(model, sparsity, pattern)
    missing = [n for n, t in targets.items() if t > 0 and n not in layers]
    if missing:
        raise KenpruneError(f"the statistics have no entry for {missing[0]} (and {len(missing) - 1} more Linears); "
                            f"were they computed on this model?")
    per_layer: dict[str, list[float]] = {}
    desc = f"{method} from statistics"
    if stream is not None:
        each_block: Any = stream.each_block(progress=progress, desc=desc)
    else:
        blocks_name, blocks = find_blocks(model)
        each_block = (block_linears(block, f"{blocks_name}.{i}" if blocks_name else str(i))
                      for i, block in enumerate(tqdm(blocks, desc=desc, unit="block", disable=not progress,
                                                     leave=False)))
    for linears in each_block:
        per_layer.update(prune_block(spec, linears, targets, layers, pattern, group, alone))
    report = stream.finish(False) if stream is not None else sparsity_report(model)
    report["targets"] = {"method": method, "pattern": str(pattern), "group": group,
                         "sparsity": sparsity if not isinstance(sparsity, Mapping) else "per-layer"}
    report["agreement_layers"] = per_layer
    return report
