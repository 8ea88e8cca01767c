"""Apply token pruning to a model in place, and remove it again.

`apply_token_pruning(model, "zero-tprune", 0.6)` replaces the forward of each of the model's layers with one
that runs the layer from its family adapter's pieces: a layer before any pruning, and not pruning itself,
runs its original forward (so a schedule that prunes nothing gives bit-identical outputs); a pruning layer
computes its attention itself (the probabilities explicitly only when the method needs them, else through
scaled_dot_product_attention), prunes between attention and MLP, and later layers run on the fewer tokens.
The state of the last forward (which tokens are left, their sizes and original positions, tokens per layer)
is `model.token_pruning.last`; `pool(model, hidden)` turns the shortened output into a sentence vector.
"""
from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import KenpruneError
from . import functional as F
from .adapters import TokenAdapter, token_adapter_for
from .methods import TOKEN_METHODS, Step, TokenMethod, TokenOptions
from .schedule import (FlopsTarget, Schedule, describe, flops_schedule, parse, reachable_flops_target, resolve,
                       single_ratio_layers)


@dataclass
class TokenState:
    """One forward's tokens: valid / protected [B, N], sizes [B, N] (merged tokens count their sources),
    original positions [B, N]; per layer the valid counts in and out [B]; optionally the kept positions."""

    valid: torch.Tensor
    protected: torch.Tensor
    size: torch.Tensor
    positions: torch.Tensor
    lengths: torch.Tensor  # input length of each sequence
    ratios: dict[int, Any] = field(default_factory=dict)  # pruning layer -> keep ratio (float, or [B] per input)
    counts: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    trace: list[torch.Tensor] = field(default_factory=list)  # per layer: positions [B, W] (-1 for empty slots)
    changed: bool = False
    overhead_seconds: float = 0.0


class TokenPruning:
    """The patch on one model: method, resolved schedule, options; `remove()` restores the model."""

    def __init__(self, model: nn.Module, method: str, schedule: Schedule, options: TokenOptions,
                 special_ids: tuple[int, ...] = (), trace: bool = False):
        self.adapter: TokenAdapter = token_adapter_for(model)
        self.base = getattr(model, "base_model", model)
        self.layers = self.adapter.layers(self.base)
        self.method_name = method
        self.method: TokenMethod = TOKEN_METHODS.get(method)
        if isinstance(schedule, str):
            schedule = parse(schedule)
        # a FLOPs target is resolved per input length (and protected count) at each forward
        self.target: FlopsTarget | None = schedule if isinstance(schedule, FlopsTarget) else None
        self.schedule = {} if self.target is not None else resolve(schedule, len(self.layers))
        self._resolved: dict[tuple[int, int], dict[int, float]] = {}
        if self.target is not None:  # out of reach at every input length: a one-line error now
            config = self.base.config
            reachable_flops_target(self.target.ratio, len(self.layers), self.adapter.longest(config),
                                   config.hidden_size, config.intermediate_size, 1 + self.adapter.protect_last)
        if options.iterations is not None and len(options.iterations) != len(self.layers):
            raise KenpruneError(f"WPR iterations: {len(options.iterations)} values for a model with "
                                f"{len(self.layers)} layers")
        self.options = options
        self.special_ids = tuple(special_ids)
        self.trace = trace
        self.generator = torch.Generator().manual_seed(options.seed)
        self.last: TokenState | None = None
        self._inputs: dict[str, Any] = {}
        self._model = model
        self._hook = self.base.register_forward_pre_hook(self._capture, with_kwargs=True)
        for index, layer in enumerate(self.layers):
            layer.forward = types.MethodType(_layer_forward(self, index, layer.forward), layer)

    def describe(self) -> str:
        if self.target is not None:
            return f"{self.method_name}, FLOPs target {self.target.ratio:g} of dense at each input's length"
        return f"{self.method_name}, schedule {describe(self.schedule)}"

    def target_schedule(self, length: int, protected: int) -> dict[int, float]:
        """The FLOPs target's schedule at `length` tokens of which `protected` stay (only those when the target
        is out of reach at that length)."""
        key = (length, protected)
        if key not in self._resolved:
            config = self.base.config
            self._resolved[key] = flops_schedule(self.target.ratio, len(self.layers), length, config.hidden_size,
                                                 config.intermediate_size, protected, clamp=True)[1]
        return self._resolved[key]

    def _ratios(self, lengths: torch.Tensor, protected: torch.Tensor) -> dict[int, Any]:
        if self.target is None:
            return self.schedule
        counts = zip(lengths.tolist(), protected.sum(-1).tolist())
        per_input = [self.target_schedule(int(n), int(p)) for n, p in counts]
        out = {}
        for layer in single_ratio_layers(len(self.layers)):
            ratios = [s.get(layer, 1.0) for s in per_input]
            if min(ratios, default=1.0) < 1.0:
                out[layer] = torch.tensor(ratios, dtype=torch.float64, device=lengths.device)
        return out

    def iterations(self, layer: int) -> int:
        if self.options.iterations is not None:
            return self.options.iterations[layer]
        return F.default_iterations(layer, len(self.layers))

    def remove(self) -> nn.Module:
        """Restore every layer's own forward and drop the hook; the model is as before the patch."""
        self._hook.remove()
        for layer in self.layers:
            if "forward" in layer.__dict__:
                del layer.forward
        if getattr(self._model, "token_pruning", None) is self:
            del self._model.token_pruning
        return self._model

    # ------------------------------------------------------------------------------------------- per forward
    def _capture(self, _module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self._inputs = {"input_ids": ids if isinstance(ids, torch.Tensor) and ids.dim() == 2
                        and not ids.is_floating_point() else None, "attention_mask": mask}
        self.last = None

    def _start(self, x: torch.Tensor) -> TokenState:
        b, n, _ = x.shape
        mask = self._inputs.get("attention_mask")
        if mask is not None:
            if mask.dim() != 2 or mask.shape != (b, n):
                raise KenpruneError(f"token pruning needs a [batch, tokens] attention mask, got shape "
                                    f"{tuple(mask.shape)}")
            valid = mask.to(x.device).bool()
        else:
            valid = torch.ones(b, n, dtype=torch.bool, device=x.device)
        lengths = valid.sum(-1)
        ar = torch.arange(n, device=x.device).expand(b, n)
        protected = ar == 0
        if self.adapter.protect_last:
            last = (ar * valid).max(-1).values
            protected = protected | (ar == last[:, None])
        ids = self._inputs.get("input_ids")
        if ids is not None and self.special_ids and ids.shape == (b, n):
            protected = protected | torch.isin(ids.to(x.device), torch.tensor(self.special_ids, device=x.device))
        protected = protected & valid
        state = TokenState(valid=valid, protected=protected, size=valid.to(x.dtype), positions=ar.clone(),
                           lengths=lengths, ratios=self._ratios(lengths, protected))
        self.last = state
        return state


def _attention_bias(state: TokenState, dtype: torch.dtype, merges: bool) -> torch.Tensor | None:
    """Additive key bias [B, 1, 1, N]: -inf on empty slots, + log(size) for proportional attention (ToMe)."""
    if not merges and bool(state.valid.all()):
        return None
    bias = torch.zeros(state.valid.shape, dtype=dtype, device=state.valid.device)
    if merges:
        bias = state.size.clamp_min(1e-12).log().to(dtype)
    bias = bias.masked_fill(~state.valid, torch.finfo(dtype).min)
    return bias[:, None, None, :]


def _layer_forward(patch: TokenPruning, index: int, original):
    def forward(layer: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        state = patch._start(hidden_states) if index == 0 or patch.last is None else patch.last
        prune = index in state.ratios
        count_in = state.valid.sum(-1)
        if not state.changed and not prune:
            out = original(hidden_states, *args, **kwargs)
            state.counts.append((count_in, count_in))
            if patch.trace:
                state.trace.append(torch.where(state.valid, state.positions, -1))
            return out
        adapter, method = patch.adapter, patch.method
        x = hidden_states
        (q, k, v), scale = adapter.project(layer, x)
        bias = _attention_bias(state, q.dtype, method.merges)
        attn = None
        if prune and method.needs_attention:
            scores = (q @ k.transpose(-1, -2)) * scale
            if bias is not None:
                scores = scores + bias
            attn = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            context = attn @ v
        else:
            context = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        b, h, n, d = context.shape
        x = adapter.attend_out(layer, context.transpose(1, 2).reshape(b, n, h * d), x)
        if prune:
            start = time.perf_counter()
            keep_n = F.keep_counts(state.lengths, state.ratios[index], state.protected)
            keep_n = torch.minimum(keep_n, count_in)
            step = Step(x=x, attn=attn, keys=k, valid=state.valid, protected=state.protected, size=state.size,
                        keep=keep_n, iterations=patch.iterations(index), options=patch.options,
                        generator=patch.generator)
            keep, x, size = method.select(step)
            state.valid, (x, size, state.protected, state.positions) = F.compact(
                keep, x, size, state.protected, state.positions)
            state.protected = state.protected & state.valid
            state.size = size * state.valid.to(size.dtype)
            state.changed = True
            state.overhead_seconds += time.perf_counter() - start
        state.counts.append((count_in, state.valid.sum(-1)))
        if patch.trace:
            state.trace.append(torch.where(state.valid, state.positions, -1))
        return adapter.mlp(layer, x)

    return forward


def apply_token_pruning(model: nn.Module, method: str = "zero-tprune", schedule: Schedule = 0.6, *,
                        options: TokenOptions | None = None, special_ids: tuple[int, ...] = (),
                        trace: bool = False) -> nn.Module:
    """Prune tokens in `model`'s forward (in place) with `method` under `schedule`; returns the model.

    schedule: one keep ratio (0.6), ratios for layers 1, 2, ..., {layer: ratio}, or a FLOPs target ("flops:0.7"
    or FlopsTarget(0.7): the keep ratio of the single-ratio shape whose FLOPs are 70 % of dense, resolved at each
    input's length; inputs too short to reach it keep only their special tokens) (schedule.py). special_ids:
    token ids never pruned besides the first token (and, for BERT, the last). trace: keep the surviving
    positions per layer in `model.token_pruning.last.trace`. A model patched before is re-patched."""
    TOKEN_METHODS.get(method)
    if getattr(model, "token_pruning", None) is not None:
        model.token_pruning.remove()
    patch = TokenPruning(model, method, schedule, options or TokenOptions(), special_ids, trace)
    model.token_pruning = patch
    return model


def remove_token_pruning(model: nn.Module) -> nn.Module:
    """Undo apply_token_pruning (a model without the patch is returned as it is)."""
    patch = getattr(model, "token_pruning", None)
    return patch.remove() if patch is not None else model


def token_weights(model: nn.Module, attention_mask: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    """Per-token pooling weights [B, N] of the last forward: sizes of the surviving tokens (1 each, or the
    merged count for ToMe) when the model is patched, else the attention mask."""
    patch = getattr(model, "token_pruning", None)
    if patch is not None and patch.last is not None:
        return patch.last.size
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
    return attention_mask.to(hidden.dtype)


def pool(model: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean pooling over the surviving tokens, size-weighted (exact for ToMe's merges); [B, C]."""
    w = token_weights(model, attention_mask, hidden)[..., None]
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1e-12)
