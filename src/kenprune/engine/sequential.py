"""The sequential block engine: calibrate any Hugging Face decoder one block at a time.

    blocks_name, blocks = find_blocks(model)            # the ModuleList of identical blocks
    inputs = capture_block_inputs(model, windows)       # block inputs + every kwarg the model passes
    for step in sequential_blocks(model, inputs):       # one block on the compute device at a time
        stats = step.collect(HESSIAN)                    # hooks on every Linear: {name: InputStats}
        ...prune step.linears using stats...
    # after each step the block's outputs (new weights) replace its inputs, batch by batch, for the next block

Nothing here names an architecture: blocks are found by structure, block inputs are captured
with forward pre-hooks (`with_kwargs=True`) so masks, position ids and rotary embeddings pass
through unchanged whatever the model calls them, and GPT-2's Conv1D (weights stored
transposed) is read and written through `linear_weight` / `set_linear_weight`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import KenpruneError
from ..models.blocks import block_linears, block_prefix, find_blocks, linear_weight
from ..measure import release_free_memory
from ..precision import compute_dtype
from ..settings import Calibration
from ..methods.base import HESSIAN, NO_STATISTIC, NORMS, STATISTICS, InputStats


class _StopForward(Exception):
    """Raised from a hook to end a model forward once the block inputs are captured."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The compute device: the one given, else CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, list):
        return [_map_tensors(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _share_equal(obj: Any, first: Any) -> Any:
    """`obj` with each tensor equal to its counterpart in `first` replaced by that counterpart: the
    positions and rotary tables of every calibration batch are the same, so one copy is kept."""
    if isinstance(obj, torch.Tensor):
        same = (isinstance(first, torch.Tensor) and obj.shape == first.shape and obj.dtype == first.dtype
                and obj.device == first.device and torch.equal(obj, first))
        return first if same else obj
    if isinstance(obj, (tuple, list)) and isinstance(first, type(obj)) and len(obj) == len(first):
        return type(obj)(_share_equal(o, f) for o, f in zip(obj, first))
    if isinstance(obj, dict) and isinstance(first, dict):
        return {k: _share_equal(v, first[k]) if k in first else v for k, v in obj.items()}
    return obj


@dataclass
class BlockInputs:
    """What enters the blocks for a batched calibration set.

    hidden[b]: the hidden states of batch b entering block 0; extras[i][b]: the other
    positional args and kwargs the model passed to block i for batch b (masks, positions,
    rotary embeddings; shared objects when the model passes the same ones to every block).
    Reusable: the engine never modifies it, so a search can capture once and prune many copies.
    """

    hidden: list[torch.Tensor]
    extras: list[list[tuple[tuple, dict]]]
    hidden_kwarg: str | None = None  # set when the model passes hidden states by keyword
    windows: int = 0
    seqlen: int = 0

    def to(self, device: torch.device | str) -> "BlockInputs":
        move = lambda t: t.to(device)  # noqa: E731
        return BlockInputs(_map_tensors(self.hidden, move), _map_tensors(self.extras, move),
                           self.hidden_kwarg, self.windows, self.seqlen)

    def call(self, block: nn.Module, index: int, batch: int, hidden: torch.Tensor) -> torch.Tensor:
        """Run one block on one batch with the arguments the model gives that block; the new hidden states."""
        args, kwargs = self.extras[index][batch]
        if self.hidden_kwarg is None:
            out = block(hidden, *args, **kwargs)
        else:
            out = block(*args, **{self.hidden_kwarg: hidden}, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


def _split_hidden(args: tuple, kwargs: dict) -> tuple[torch.Tensor, tuple, dict, str | None]:
    if args:
        return args[0], tuple(args[1:]), dict(kwargs), None
    for key in ("hidden_states", "hidden_state", "x"):
        if key in kwargs:
            rest = {k: v for k, v in kwargs.items() if k != key}
            return kwargs[key], (), rest, key
    raise KenpruneError("could not find the hidden states among the block's arguments")


@torch.no_grad()
def capture_block_inputs(model: nn.Module, windows: torch.Tensor | list[torch.Tensor], *,
                         batch_size: int = Calibration.batch_size,
                         storage_device: str | torch.device | None = None) -> BlockInputs:
    """Run the model's embedding stage on calibration windows [n, seqlen] and keep every block's inputs.

    `windows` may also be a list of ready batches [b, len] of different lengths (e.g. right-padded
    zero-shot requests, `kenprune.evaluate.streamed_lm`): each is one batch, `batch_size` is not used.

    Block 0's hidden states are captured by a forward pre-hook; every block is then replaced for
    the duration by a pass-through that records the arguments the model gives it (masks and
    rotary embeddings may differ per block, e.g. Gemma's sliding layers); the last one stops the
    forward. The model runs where its embeddings are; no block computes anything.
    """
    _, blocks = find_blocks(model)
    if isinstance(windows, (list, tuple)):
        batches = list(windows)
        if not batches or any(b.dim() != 2 or b.numel() == 0 for b in batches):
            raise KenpruneError("block inputs need a non-empty list of non-empty [b, len] batches")
    else:
        if windows.dim() != 2 or windows.numel() == 0:
            raise KenpruneError(f"calibration windows must be a non-empty [n, seqlen] tensor, got shape "
                                f"{tuple(windows.shape)}")
        batches = [windows[start:start + batch_size] for start in range(0, windows.shape[0], batch_size)]
    embed_device = next(model.parameters()).device
    storage = torch.device(storage_device) if storage_device is not None else embed_device
    hidden: list[torch.Tensor] = []
    extras: list[list[tuple[tuple, dict]]] = [[] for _ in blocks]
    hidden_kwarg: list[str | None] = [None]

    def recorder(index: int) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            h, rest_args, rest_kwargs, key = _split_hidden(args, kwargs)
            if index == 0:
                hidden.append(h.detach().to(storage))
                hidden_kwarg[0] = key
            extra = _map_tensors((rest_args, rest_kwargs), lambda t: t.detach().to(storage))
            extras[index].append(_share_equal(extra, extras[index][0]) if extras[index] else extra)
            if index == len(blocks) - 1:
                raise _StopForward
            return h

        return forward

    for index, block in enumerate(blocks):
        block.forward = recorder(index)
    try:
        for batch in batches:
            try:
                model(input_ids=batch.to(embed_device), use_cache=False)
            except _StopForward:
                pass
            else:
                raise KenpruneError("the model's forward never reached its last block; cannot calibrate it")
    finally:
        for block in blocks:
            del block.forward
    return BlockInputs(hidden, extras, hidden_kwarg[0], sum(int(b.shape[0]) for b in batches),
                       max(int(b.shape[1]) for b in batches))


@dataclass
class BlockStep:
    """One block during the sequential pass; the consumer may collect statistics and change weights."""

    index: int
    name: str
    block: nn.Module
    linears: dict[str, nn.Module]
    device: torch.device
    inputs: BlockInputs
    hidden: list[torch.Tensor]  # this block's input hidden states, one tensor per batch
    outputs: list[torch.Tensor] | None = field(default=None, repr=False)
    keep_outputs: bool = True  # False when the engine recomputes the outputs after the step anyway
    owns_hidden: bool = False  # True when `hidden`'s tensors may be overwritten (nobody else holds them)
    dtype: str | None = None  # compute dtype of the block's forwards (None/float32: the model's own)

    @torch.no_grad()
    def forward(self) -> list[torch.Tensor] | None:
        """Run the block (current weights) on every calibration batch; its outputs, one per batch
        (kept in `outputs` only when `keep_outputs`: otherwise the pass is for its hooks alone)."""
        self.outputs = None
        outputs = []
        with compute_dtype(self.block, self.dtype, self.device):
            for b, h in enumerate(self.hidden):
                out = self.inputs.call(self.block, self.index, b, h)
                if self.keep_outputs:
                    outputs.append(out.to(h.dtype))
        self.outputs = outputs if self.keep_outputs else None
        return self.outputs

    @torch.no_grad()
    def advance(self) -> list[torch.Tensor]:
        """Replace each batch's inputs by the block's outputs (current weights), one batch at a time,
        so one set of calibration activations is live, not two. Returns the (same) list.

        Outputs are written into the input buffers when the engine owns them: the activations then
        keep their first allocation for the whole pass and only the forward's temporaries come and
        go (new buffers per block fragment the heap by tens of MiB)."""
        with compute_dtype(self.block, self.dtype, self.device):
            for b, h in enumerate(self.hidden):
                out = self.inputs.call(self.block, self.index, b, h)
                if self.owns_hidden and out.shape == h.shape and out.device == h.device:
                    h.copy_(out)  # in the activations' own dtype, whatever the block computed in
                else:
                    self.hidden[b] = out.to(h.dtype)
        return self.hidden

    def collect(self, statistic: str = NORMS, stats_type: Callable[..., Any] = InputStats) -> dict[str, InputStats]:
        """Input statistics of every Linear in the block, from one forward over the calibration set.

        Linears fed the very same tensor (q/k/v, gate/up) share one InputStats object. `stats_type`:
        another accumulator with InputStats' constructor and `add` (e.g. federated.ShardStats: raw sums).
        """
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; one of {STATISTICS}")
        stats: dict[str, InputStats] = {}
        if statistic == NO_STATISTIC:
            return stats
        last: list[Any] = [None, None]

        def hook_for(name: str, module: nn.Module) -> Callable[..., None]:
            columns = linear_weight(module).shape[1]

            def hook(_module: nn.Module, args: tuple) -> None:
                x = args[0]
                shared = last[0] is x
                if name not in stats:
                    stats[name] = last[1] if shared else stats_type(columns, statistic == HESSIAN, self.device)
                if not (shared and last[1] is stats[name]):
                    stats[name].add(x)
                last[0], last[1] = x, stats[name]

            return hook

        handles = [m.register_forward_pre_hook(hook_for(n, m)) for n, m in self.linears.items()]
        try:
            self.forward()
        finally:
            for handle in handles:
                handle.remove()
            last.clear()
        return stats


def _module_device(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def sequential_blocks(model: nn.Module, inputs: BlockInputs, *, device: str | torch.device | None = None,
                      recompute: bool = True, progress: bool = True, desc: str = "blocks",
                      consume: bool = False, dtype: str | torch.dtype | None = None,
                      stream: Any = None) -> Iterator[BlockStep]:
    """Yield each block in order with its calibration inputs, on the compute device only while yielded.

    After the consumer is done with a step, the block's outputs feed the next block: recomputed
    with the block's current (pruned) weights when `recompute`, else reused from `step.collect`
    (score-only passes over an unmodified model). `inputs` is left unchanged, unless `consume`:
    then its hidden states are taken, so block 0's inputs are freed once block 0 is done (a
    one-shot prune then holds one block's inputs and outputs, never a third copy).
    `dtype`: the compute dtype of the block forwards (`kenprune.precision`); the activations passed
    between blocks and every statistic stay in the model's precision / float32.
    `stream`: a `kenprune.engine.streaming.BlockStream` for models bigger than memory: it says where the
    pass starts (a resumed run) and loads each block's weights before its step and writes and frees them after.
    """
    blocks_name, blocks = find_blocks(model)
    if len(inputs.extras) != len(blocks):
        raise KenpruneError(f"the block inputs were captured from a model with {len(inputs.extras)} blocks, "
                            f"this one has {len(blocks)}")
    device = resolve_device(device)
    hidden = [h.to(device) for h in inputs.hidden]  # our own list: steps replace its entries, never the tensors
    owned = consume or any(h is not c for h, c in zip(hidden, inputs.hidden))  # moved copies are ours
    if consume:
        inputs.hidden = []
    inputs = replace(inputs, hidden=[]).to(device)  # the per-block arguments; hidden states travel in `hidden`
    start = 0
    if stream is not None:
        start, hidden = stream.begin(hidden)
        owned = owned or start > 0
    step = None
    for index, block in enumerate(tqdm(blocks, desc=desc, unit="block", disable=not progress, leave=False)):
        if index < start:  # finished by an earlier, interrupted run
            continue
        if stream is not None:
            stream.load(index, block)
        home = _module_device(block)
        block.to(device)
        name = f"{blocks_name}.{index}" if blocks_name else str(index)
        step = BlockStep(index, name, block, block_linears(block, name), device, inputs, hidden,
                         keep_outputs=not recompute, owns_hidden=owned, dtype=dtype)
        try:
            yield step
            if step.outputs is not None and not recompute:
                hidden = step.outputs
            else:
                hidden = step.advance()
            owned = True  # from here on every tensor in `hidden` was made by the engine
        finally:
            block.to(home)
        if stream is not None:
            stream.done(index, block, hidden)
        step.hidden = step.outputs = None  # type: ignore[assignment]
        release_free_memory()  # the step's freed temporaries go back to the OS, not into the next block's peak
    del hidden, step
    release_free_memory()  # and the calibration activations, before whatever runs next (e.g. an evaluation)
