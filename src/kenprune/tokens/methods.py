"""Token pruning methods: one registry entry each, a function from one pruning layer's view to a keep mask.

Every method prunes to the same budget (`keep[b]` tokens per sequence) so that they compare at equal cost.
ToMe merges instead of dropping: it also returns the size-weighted tokens and their sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..registry import Registry
from . import functional as F


@dataclass
class Step:
    """What a pruning layer sees: x [B, N, C] after the attention sublayer, the attention probabilities
    [B, H, N, N] (only for methods that need them), keys [B, H, N, d], valid / protected [B, N], token sizes
    [B, N], the per-sequence budget keep [B], the layer's WPR iterations and the method's options."""

    x: torch.Tensor
    attn: torch.Tensor | None
    keys: torch.Tensor
    valid: torch.Tensor
    protected: torch.Tensor
    size: torch.Tensor
    keep: torch.Tensor
    iterations: int
    options: "TokenOptions"
    generator: torch.Generator | None = None


@dataclass(frozen=True)
class TokenOptions:
    """Zero-TPrune's knobs: WPR start (`cls_weight`: [CLS] starts sqrt(N) times the others), VHF range (None: no
    filter), share of the removals made by the similarity stage, WPR iterations per layer (None: 30 / 5 / 1 by
    thirds of the layers); `seed` for the random baseline."""

    cls_weight: bool = False
    vhf: tuple[float, float] | None = (0.01, 0.7)
    similarity_share: float = 0.5
    iterations: tuple[int, ...] | None = None
    seed: int = 0


@dataclass(frozen=True)
class TokenMethod:
    select: Callable[[Step], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # -> (keep mask, x, size)
    needs_attention: bool = False
    merges: bool = False  # sizes matter: proportional attention and size-weighted pooling


def _zero_tprune(step: Step):
    keys = step.keys.transpose(1, 2).flatten(2)  # [B, N, H*d]: the whole key vector
    keep = F.zero_tprune_keep(step.attn, keys, step.valid, step.protected, step.keep, step.iterations,
                              similarity_share=step.options.similarity_share, cls_weight=step.options.cls_weight,
                              vhf_range=step.options.vhf)
    return keep, step.x, step.size


def _scored(score: Callable[[Step], torch.Tensor]):
    def select(step: Step):
        return F.keep_top(score(step), step.valid, step.protected, step.keep), step.x, step.size
    return select


def _random_scores(step: Step) -> torch.Tensor:
    return torch.rand(step.valid.shape, generator=step.generator).to(step.x.device)


def _tome(step: Step):
    metric = step.keys.mean(1)  # ToMe: keys averaged over heads
    r = (step.valid.sum(-1) - step.keep).clamp_min(0)
    merged, dst = F.bipartite_merge(metric, step.valid, step.protected, r)
    x, size = F.merge_wavg(step.x, step.size, merged, dst)
    return step.valid & ~merged, x, size


TOKEN_METHODS: Registry[TokenMethod] = Registry("token pruning method")
TOKEN_METHODS.add("zero-tprune", TokenMethod(_zero_tprune, needs_attention=True),
                  "Zero-TPrune: I' -> S -> I with WPR, EIR and VHF on the layer's attention graph")
TOKEN_METHODS.add("tome", TokenMethod(_tome, merges=True),
                  "ToMe: bipartite soft matching of keys, size-weighted merge, proportional attention")
TOKEN_METHODS.add("truncate", TokenMethod(_scored(lambda s: F.truncate_scores(s.valid))),
                  "keep the first tokens (and the protected ones)")
TOKEN_METHODS.add("random", TokenMethod(_scored(_random_scores)), "keep random tokens (seeded)")
TOKEN_METHODS.add("cls-attention", TokenMethod(_scored(lambda s: F.cls_attention_scores(s.attn)),
                                               needs_attention=True),
                  "keep the tokens [CLS] attends to most (mean over heads; EViT-like)")
