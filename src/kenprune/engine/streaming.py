"""Models bigger than memory on the block engine: weights streamed block by block, activations spilled.

    lazy = LazyModel.open("smollm2-135m")                       # no weight read yet
    stream = PruneStream(lazy, sink, activation_budget=64 << 20, spill_dir=work / "spill")
    inputs = stream.capture(windows, batch_size=8)             # embeddings loaded for this, dropped after
    report = prune_model(lazy.model, inputs, method="wanda", stream=stream)   # any engine method
    nll = streamed_window_nll(lazy, windows, batch_size=1)     # perplexity, one block in memory at a time
    scores, held = streamed_pass(lazy, batches, score)          # any per-batch score of variable-length batches

A `BlockStream` is what `sequential_blocks(..., stream=)` calls: `begin` (where the pass starts, and
with which activations), `load` (read block i's weights) and `done` (write block i, free it). The
memory a streamed prune holds is the Python runtime + two blocks (the one worked on and its
temporaries, e.g. SparseGPT's Hessians) + the activations kept in RAM (up to the budget; the rest
lives in file-backed tensors under `spill_dir`) + the embeddings and head while the inputs are
captured and the rest is written.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import KenpruneError
from ..models.blocks import block_linears, block_prefix
from ..models.lazy import LazyModel
from .checkpoint import BlockSink
from .sequential import BlockInputs, capture_block_inputs, sequential_blocks

_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000 ** 2, "MB": 1000 ** 2, "G": 1000 ** 3, "GB": 1000 ** 3,
          "T": 1000 ** 4, "TB": 1000 ** 4, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}

# the memory model behind `--stream auto` (measured on smollm2-135m, benchmarks/big_models.py)
RUNTIME_BYTES = 700 << 20   # Python + torch + transformers + tokenizer, before any weight
IN_MEMORY_FACTOR = 2.0      # in-memory prune + save peaks at about twice the fp32 weights above the runtime
AUTO_SHARE = 0.8            # --max-memory unset: this share of the memory available now


def parse_size(text: str | int) -> int:
    """Bytes of '600MB', '4GB', '1.5GiB', '800M' or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise KenpruneError(f"--max-memory {text!r} is not a size; write e.g. 600MB, 4GB or 1.5GiB")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise KenpruneError(f"--max-memory {text!r} must be more than zero")
    return value


def plan(weights_bytes: int, blocks_bytes: list[int], max_memory: str | None, mode: str = "auto") -> dict[str, Any]:
    """Which path a prune takes and with what activation budget: the record's details["memory"].

    The budget is --max-memory, or AUTO_SHARE of the memory available now (psutil). `auto` streams when
    the in-memory path's estimate (runtime + IN_MEMORY_FACTOR x the fp32 weights) exceeds it."""
    import psutil

    available = int(psutil.virtual_memory().available)
    budget = parse_size(max_memory) if max_memory else int(available * AUTO_SHARE)
    in_memory_need = RUNTIME_BYTES + int(IN_MEMORY_FACTOR * weights_bytes)
    block = max(blocks_bytes, default=0)
    rest = weights_bytes - sum(blocks_bytes)
    if mode == "on":
        streamed, reason = True, "--stream on"
    elif mode == "off":
        streamed, reason = False, "--stream off"
    else:
        streamed = in_memory_need > budget
        reason = (f"auto: the in-memory estimate {in_memory_need / 2**20:.0f} MiB "
                  f"{'exceeds' if streamed else 'fits'} the budget of {budget / 2**20:.0f} MiB "
                  f"({'--max-memory' if max_memory else f'{AUTO_SHARE:.0%} of the memory available'})")
    return {"path": "streamed" if streamed else "in-memory", "reason": reason, "budget_bytes": budget,
            "available_bytes": available, "weights_bytes": weights_bytes, "in_memory_estimate_bytes": in_memory_need,
            "block_bytes": block, "embeddings_head_bytes": rest,
            "activation_budget_bytes": max(0, budget - RUNTIME_BYTES - 2 * block - rest)}


def spill(hidden: list[torch.Tensor], budget: int, folder: Path | None) -> tuple[list[torch.Tensor], int]:
    """The activations with those beyond `budget` bytes moved into file-backed tensors under `folder`
    (torch.from_file, shared: written in place by the engine, paged by the kernel); the bytes spilled."""
    kept = spilled = 0
    out = []
    for b, h in enumerate(hidden):
        size = h.numel() * h.element_size()
        if folder is None or h.device.type != "cpu" or kept + size <= budget:
            kept += size
            out.append(h)
            continue
        out.append(file_backed(h, folder / f"hidden-{b:05d}.bin"))
        spilled += size
    return out, spilled


def file_backed(tensor: torch.Tensor, path: Path) -> torch.Tensor:
    """A copy of `tensor` living in the file `path` (torch.from_file, shared: paged by the kernel, not held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(tensor.numel() * tensor.element_size())
    mapped = torch.from_file(str(path), shared=True, size=tensor.numel(), dtype=tensor.dtype).view(tensor.shape)
    mapped.copy_(tensor)
    return mapped


def _read_scores(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """A layer's scores read from their file into memory of their own (freed when dropped; no mapping kept)."""
    return torch.from_file(str(path), shared=False, size=math.prod(shape), dtype=torch.float32).view(shape)


def streamed_scores(lazy: LazyModel, windows: torch.Tensor | None, folder: Path, *, method: str,
                    batch_size: int, dtype: str | torch.dtype | None = None, activation_budget: int = 1 << 62,
                    progress: bool = True) -> dict[str, Callable[[], torch.Tensor]]:
    """`layer_scores` of a model bigger than memory: one dense pass, one block read at a time, every layer's
    scores written to a file under `folder`; returned as what reads each back (what an allocation that needs
    scores uses: global, OWL, DSA, holding one block's scores at a time)."""
    from .elementwise import layer_scores

    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, int] = {}

    def to_file(name: str, scores: torch.Tensor) -> Callable[[], torch.Tensor]:
        names[name] = len(names)
        path = folder / f"scores-{names[name]:05d}.bin"
        scores.float().cpu().contiguous().numpy().tofile(path)
        return functools.partial(_read_scores, path, tuple(scores.shape))

    reader = BlockStream(lazy, activation_budget=activation_budget, spill_dir=folder / "spill")
    return layer_scores(lazy.model, windows, method=method, reduce=to_file, batch_size=batch_size, dtype=dtype,
                        stream=reader, progress=progress)


def capture(lazy: LazyModel, windows: torch.Tensor, batch_size: int) -> BlockInputs:
    """Block inputs of `windows`, with the embeddings (and the rest) loaded for it and dropped after."""
    with lazy.rest_loaded():
        return capture_block_inputs(lazy.model, windows, batch_size=batch_size)


class BlockStream:
    """Reads each block before its step and frees it after; subclasses write it somewhere."""

    def __init__(self, lazy: LazyModel, *, activation_budget: int = 1 << 62, spill_dir: Path | None = None,
                 start: int = 0) -> None:
        self.lazy, self.activation_budget, self.spill_dir = lazy, activation_budget, spill_dir
        self.start = start
        self.spilled_bytes = 0
        self.activation_bytes = 0

    def capture(self, windows: torch.Tensor, batch_size: int) -> BlockInputs:
        return capture(self.lazy, windows, batch_size)

    def begin(self, hidden: list[torch.Tensor]) -> tuple[int, list[torch.Tensor]]:
        self.activation_bytes = sum(h.numel() * h.element_size() for h in hidden)
        hidden, self.spilled_bytes = spill(hidden, self.activation_budget, self.spill_dir)
        return self.start, hidden

    def load(self, index: int, block: nn.Module) -> None:
        self.lazy.load_block(index)

    def done(self, index: int, block: nn.Module, hidden: list[torch.Tensor] | None) -> None:
        self.lazy.release_block(index)

    def each_block(self, *, progress: bool = True, desc: str = "blocks") -> Iterator[dict[str, nn.Module]]:
        """Each block's Linears, loaded, for a method without calibration (magnitude); written after."""
        blocks_name, blocks = self.lazy.blocks()
        for index in tqdm(range(self.start, len(blocks)), desc=desc, unit="block", disable=not progress,
                          leave=False):
            block = blocks[index]
            self.load(index, block)
            yield block_linears(block, block_prefix(blocks_name, index))
            self.done(index, block, None)

    def finish(self, include_embeddings: bool) -> dict[str, Any]:
        raise NotImplementedError


class PruneStream(BlockStream):
    """A streamed prune: every finished block goes to a BlockSink (resumable), the rest last."""

    def __init__(self, lazy: LazyModel, sink: BlockSink, *, discard_other: bool = False, **options: Any) -> None:
        super().__init__(lazy, **options)
        self.sink = sink
        self.start = sink.resume(discard_other)
        self.resumed_from = self.start

    def restart(self) -> None:
        """Start from block 0 whatever was checkpointed (a pass whose activations the sink does not hold)."""
        if self.start:
            self.sink.discard()
            self.sink.state.update(next_block=0, layers=[], tensors={})
            self.start = self.resumed_from = 0

    def begin(self, hidden: list[torch.Tensor]) -> tuple[int, list[torch.Tensor]]:
        if 0 < self.start < self.sink.count:
            hidden = self.sink.saved_hidden()  # what entered block `start` in the interrupted run
        return super().begin(hidden)

    def done(self, index: int, block: nn.Module, hidden: list[torch.Tensor] | None) -> None:
        from .elementwise import block_sparsity

        self.sink.write_block(index, block, hidden, block_sparsity(self.lazy.blocks()[0], index, block))
        super().done(index, block, hidden)

    def finish(self, include_embeddings: bool) -> dict[str, Any]:
        """Write the rest (embeddings and head pruned by magnitude first when asked); the sparsity report."""
        from .elementwise import prune_embeddings

        with self.lazy.rest_loaded():
            if include_embeddings:
                layers = self.sink.state["layers"]  # at the block Linears' overall sparsity, as in memory
                prune_embeddings(self.lazy.model, sum(x["zeros"] for x in layers) /
                                 max(sum(x["parameters"] for x in layers), 1))
            self.sink.write_rest(self.lazy.model)
        return self.sink.report()


class _LastHidden(BlockStream):
    """An evaluation pass: keeps the last block's outputs, and samples the resident memory while each block
    is in memory (the peak of what the pass holds: runtime + one block + the activations)."""

    final: list[torch.Tensor] | None = None
    rss_max: int = 0

    def done(self, index: int, block: nn.Module, hidden: list[torch.Tensor] | None) -> None:
        from ..measure import current_rss_bytes

        self.rss_max = max(self.rss_max, current_rss_bytes())
        super().done(index, block, hidden)
        if index == len(self.lazy.blocks()[1]) - 1:
            self.final = hidden


@torch.no_grad()
def streamed_pass(lazy: LazyModel, batches: list[torch.Tensor], score: Callable[[nn.Module, int, torch.Tensor], Any],
                  *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                  activation_budget: int = 1 << 62, spill_dir: Path | None = None, progress: bool = True,
                  desc: str = "blocks") -> tuple[list[Any], dict[str, Any]]:
    """`score(model, b, batch)` for every batch of input ids (each [n_b, len_b]; lengths may differ), the
    model read one block at a time: all batches pass block 0, then block 1, ...; then the embeddings, final
    norm and head are loaded and `score` runs a forward of the whole model per batch in which the blocks
    hand over the kept last-block outputs (so the model's own code runs the norm and head, as in memory).

    Returns the scores in batch order and what the pass held: activation bytes (all batches' hidden
    states), bytes spilled beyond `activation_budget` to file-backed tensors under `spill_dir`, and the
    largest resident set sampled with each block (and each scored batch) in memory."""
    from ..measure import current_rss_bytes
    from ..precision import compute_dtype

    keeper = _LastHidden(lazy, activation_budget=activation_budget, spill_dir=spill_dir)
    inputs = keeper.capture(batches, 1)
    for _ in sequential_blocks(lazy.model, inputs, device=device, consume=True, dtype=dtype, stream=keeper,
                               progress=progress, desc=desc):
        pass
    final = keeper.final
    _, blocks = lazy.blocks()
    which = [0]
    home = [torch.device("cpu")]

    def passthrough(*args: Any, **kwargs: Any) -> Any:
        return args[0] if args else next(v for k, v in kwargs.items() if k in ("hidden_states", "hidden_state", "x"))

    def last(*_args: Any, **_kwargs: Any) -> Any:
        return final[which[0]].to(home[0])

    for block in blocks[:-1]:
        block.forward = passthrough
    blocks[-1].forward = last
    out = []
    try:
        with lazy.rest_loaded():
            home[0] = next(p.device for p in lazy.model.parameters() if p.device.type != "meta")
            with compute_dtype(lazy.model, dtype, None):
                for b, batch in enumerate(batches):
                    which[0] = b
                    out.append(score(lazy.model, b, batch.to(home[0])))
                    keeper.rss_max = max(keeper.rss_max, current_rss_bytes())
    finally:
        for block in blocks:
            del block.forward
    return out, {"batches": len(batches), "activations_bytes": keeper.activation_bytes,
                 "spilled_bytes": keeper.spilled_bytes,
                 "activation_budget_bytes": activation_budget if activation_budget < 1 << 62 else None,
                 "rss_max_bytes": keeper.rss_max}


def streamed_window_nll(lazy: LazyModel, windows: torch.Tensor, *, batch_size: int = 1,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        activation_budget: int = 1 << 62, spill_dir: Path | None = None,
                        progress: bool = True) -> torch.Tensor:
    """`window_nll` of every window, the model read one block at a time (`streamed_pass`; batches as
    `perplexity` forms them: same numbers)."""
    from ..evaluate.language_model import window_nll

    batches = [windows[start:start + batch_size] for start in range(0, windows.shape[0], batch_size)]
    out, _ = streamed_pass(lazy, batches, lambda model, _b, batch: window_nll(model, batch).cpu(), device=device,
                           dtype=dtype, activation_budget=activation_budget, spill_dir=spill_dir, progress=progress,
                           desc="perplexity blocks")
    return torch.cat(out)
