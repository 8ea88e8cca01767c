"""Model-level element-wise pruning on the block engine: in place, on a copy, or scores only.

    windows = calibration_windows(tokenizer, "wiki:calib", nsamples=128, seqlen=512, seed=0)
    inputs = capture_block_inputs(model, windows)           # optional: reuse across many prunes
    report = prune_model(model, inputs, method="wanda", sparsity=0.5)          # one ratio
    report = prune_model(model, inputs, method="wanda", sparsity={0: .4, 1: .6, ...})  # per block
    report = prune_model(model, inputs, method="sparsegpt", pattern="2:4")
    pruned, report = pruned_copy(model, ratios, inputs)     # the model itself is untouched
    scores = layer_scores(model, inputs, method="wanda", reduce=my_outlier_ratio)  # OWL/DSA pass 1

`sparsity` is one float in [0, 1) or a mapping from block index (int) or qualified Linear name
(str, as in model.named_modules()) to a ratio; Linear names override block indices, layers
not named are left dense. Only the Linears inside the repeated blocks are pruned (the papers'
protocol); embeddings and the LM head are pruned by magnitude only when `include_embeddings`.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from ..models.blocks import block_linears, find_blocks, linear_weight, set_linear_weight
from .sequential import BlockInputs, capture_block_inputs, sequential_blocks
from ..errors import KenpruneError
from ..settings import Calibration, Sparsity
from ..methods import METHODS, NO_STATISTIC, Method, Pattern, check_sparsity, magnitude, select

CalibrationData = Union[torch.Tensor, BlockInputs, None]


def layer_targets(model: nn.Module, sparsity: Sparsity, pattern: Pattern | None = None) -> dict[str, float]:
    """Target ratio of every Linear in the blocks, by qualified name (N:M patterns fix it at N/M)."""
    blocks_name, blocks = find_blocks(model)
    per_block = [block_linears(b, f"{blocks_name}.{i}" if blocks_name else str(i)) for i, b in enumerate(blocks)]
    names = [n for linears in per_block for n in linears]
    if pattern is not None and pattern.is_nm:
        if isinstance(sparsity, Mapping):
            raise KenpruneError(f"an N:M pattern fixes every layer at {pattern.n}/{pattern.m}; "
                                f"per-layer ratios need --pattern unstructured")
        return dict.fromkeys(names, float(pattern.sparsity))
    if not isinstance(sparsity, Mapping):
        return dict.fromkeys(names, check_sparsity(sparsity))
    targets = dict.fromkeys(names, 0.0)
    by_name = {k: v for k, v in sparsity.items() if isinstance(k, str)}
    for key, ratio in sparsity.items():
        if isinstance(key, str):
            if key not in targets:
                raise KenpruneError(f"no Linear named {key!r} in the blocks (e.g. {names[0]!r})")
            targets[key] = check_sparsity(ratio, f"the ratio of {key}")
        elif isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(blocks):
                raise KenpruneError(f"block index {key} is out of range; the model has {len(blocks)} blocks")
            ratio = check_sparsity(ratio, f"the ratio of block {key}")
            targets.update({n: ratio for n in per_block[key] if n not in by_name})
        else:
            raise KenpruneError(f"per-layer ratios are keyed by block index or Linear name, not {key!r}")
    return targets


def _inputs(model: nn.Module, calibration: CalibrationData, batch_size: int) -> BlockInputs:
    if isinstance(calibration, BlockInputs):
        return calibration
    if calibration is None:
        raise KenpruneError("this method needs calibration data; pass windows from calibration_windows()")
    return capture_block_inputs(model, calibration, batch_size=batch_size)


def _prune_layer(method: Method, module: nn.Module, stats: Any, ratio: float, pattern: Pattern,
                 group: str) -> None:
    weight = linear_weight(module)
    result = method.prune(weight.detach(), stats, sparsity=ratio, pattern=pattern, group=group)
    set_linear_weight(module, result.weight)


def prune_model(model: nn.Module, calibration: CalibrationData = None, *, method: str = "wanda",
                sparsity: Sparsity = 0.5, pattern: str | Pattern | None = None, group: str | None = None,
                include_embeddings: bool = False, device: str | torch.device | None = None,
                batch_size: int = Calibration.batch_size, progress: bool = True,
                dtype: str | torch.dtype | None = None, stream: Any = None) -> dict[str, Any]:
    """Prune `model` in place, block by block; returns the sparsity report (see `sparsity_report`).

    calibration: windows [n, seqlen] or captured BlockInputs (not needed for magnitude).
    group: comparison group (magnitude: matrix|row, wanda: row|matrix, sparsegpt: block|row).
    dtype: compute dtype of the block forwards (None: the model's own); statistics stay float32,
    masks and weight updates use the model's own weights (`kenprune.precision`).
    stream: a `kenprune.engine.streaming.BlockStream` (a model bigger than memory): each block is read before
    its step and written after it; the report comes from what was written.
    """
    spec = METHODS.get(method)
    pattern = Pattern.parse(pattern)
    group = group or spec.default_group
    targets = layer_targets(model, sparsity, pattern)
    if spec.statistic == NO_STATISTIC and stream is not None:
        for linears in stream.each_block(progress=progress, desc=f"{method} blocks"):
            for name, module in linears.items():
                if targets[name] > 0:
                    _prune_layer(spec, module, None, targets[name], pattern, group)
    elif spec.statistic == NO_STATISTIC:
        todo = [(name, module) for name, module in model.named_modules() if targets.get(name, 0.0) > 0]
        for name, module in tqdm(todo, desc=f"{method} layers", unit="layer", disable=not progress, leave=False):
            _prune_layer(spec, module, None, targets[name], pattern, group)
    else:
        owned = not isinstance(calibration, BlockInputs)  # captured here: the engine may free them as it goes
        inputs = stream.capture(calibration, batch_size) if stream is not None and isinstance(calibration, torch.Tensor) \
            else _inputs(model, calibration, batch_size)
        for step in sequential_blocks(model, inputs, device=device, progress=progress, desc=f"{method} blocks",
                                      consume=owned, dtype=dtype, stream=stream):
            todo = {n: m for n, m in step.linears.items() if targets[n] > 0}
            if not todo:
                continue
            stats = step.collect(spec.statistic)
            for name, module in todo.items():
                _prune_layer(spec, module, stats[name], targets[name], pattern, group)
    if stream is not None:  # the rest (embeddings, head) is written last, pruned first when asked
        report = stream.finish(include_embeddings)
    else:
        report = sparsity_report(model)
    if include_embeddings and stream is None:  # at the block Linears' overall sparsity
        prune_embeddings(model, report["block_linears"]["sparsity"])
        report = sparsity_report(model)
    report["targets"] = {"method": method, "pattern": str(pattern), "group": group,
                         "sparsity": sparsity if not isinstance(sparsity, Mapping) else "per-layer",
                         "include_embeddings": include_embeddings}
    return report


def prune_embeddings(model: nn.Module, sparsity: float) -> None:
    """Magnitude-prune (per row) the input embeddings and the LM head (once when tied); no calibration."""
    seen: set[int] = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is None or id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        with torch.no_grad():
            for rows in module.weight.split(4096):  # per-row groups: chunks bound the sort's temporaries
                rows.masked_fill_(select(magnitude.score(rows), sparsity, Pattern(), "row"), 0)


def pruned_copy(model: nn.Module, sparsity: Sparsity, calibration: CalibrationData = None,
                **options: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned deep copy of `model` (left untouched) and its report; for searches, pass cached BlockInputs."""
    clone = copy.deepcopy(model)
    return clone, prune_model(clone, calibration, sparsity=sparsity, **options)


@torch.no_grad()
def layer_scores(model: nn.Module, calibration: CalibrationData = None, *, method: str = "wanda",
                 reduce: Callable[[str, torch.Tensor], Any] | None = None, device: str | torch.device | None = None,
                 batch_size: int = Calibration.batch_size, progress: bool = True,
                 dtype: str | torch.dtype | None = None, stream: Any = None) -> dict[str, Any]:
    """Element-wise scores [out, in] of every block Linear from one dense pass, nothing pruned.

    `reduce(name, scores)` turns each score matrix into what the caller keeps (e.g. OWL's outlier
    ratio, or a file-backed copy) so 30 blocks of scores need not sit in memory; by default the scores
    are kept on CPU. `stream`: a read-only `BlockStream` (a model bigger than memory).
    """
    spec = METHODS.get(method)
    reduce = reduce or (lambda _name, s: s.cpu())
    if spec.statistic == NO_STATISTIC and stream is not None:
        return {n: reduce(n, spec.score(linear_weight(m), None))
                for linears in stream.each_block(progress=progress, desc=f"{method} scores")
                for n, m in linears.items()}
    if spec.statistic == NO_STATISTIC:
        blocks_name, blocks = find_blocks(model)
        return {n: reduce(n, spec.score(linear_weight(m), None))
                for i, b in enumerate(blocks)
                for n, m in block_linears(b, f"{blocks_name}.{i}" if blocks_name else str(i)).items()}
    out: dict[str, Any] = {}
    owned = stream is not None and isinstance(calibration, torch.Tensor)
    inputs = stream.capture(calibration, batch_size) if owned else _inputs(model, calibration, batch_size)
    for step in sequential_blocks(model, inputs, device=device, recompute=False, progress=progress,
                                  desc=f"{method} scores", dtype=dtype, consume=owned, stream=stream):
        stats = step.collect(spec.statistic)
        for name, module in step.linears.items():
            out[name] = reduce(name, spec.score(linear_weight(module), stats[name]))
    return out


def block_sparsity(blocks_name: str, index: int, block: nn.Module) -> list[dict[str, Any]]:
    """Exact zeros of each Linear of one block (a row of the sparsity report's `layers`)."""
    layers = []
    for name, module in block_linears(block, f"{blocks_name}.{index}" if blocks_name else str(index)).items():
        w = linear_weight(module)
        zeros = w.numel() - int(torch.count_nonzero(w))
        layers.append({"name": name, "block": index, "shape": list(w.shape), "parameters": w.numel(),
                       "zeros": zeros, "sparsity": zeros / w.numel()})
    return layers


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    """Exact zeros per block Linear, over all block Linears (the papers' count) and over all parameters."""
    blocks_name, blocks = find_blocks(model)
    layers = [layer for i, block in enumerate(blocks) for layer in block_sparsity(blocks_name, i, block)]
    linear_params = sum(layer["parameters"] for layer in layers)
    linear_zeros = sum(layer["zeros"] for layer in layers)
    seen: set[int] = set()
    total = zeros_all = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
            zeros_all += p.numel() - int(torch.count_nonzero(p))  # (p == 0).sum() makes an int64 copy
    return {"block_linears": {"parameters": linear_params, "zeros": linear_zeros,
                              "sparsity": linear_zeros / max(linear_params, 1)},
            "overall": {"parameters": total, "zeros": zeros_all, "sparsity": zeros_all / max(total, 1)},
            "layers": layers}
