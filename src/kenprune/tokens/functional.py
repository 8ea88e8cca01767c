"""Token pruning math as pure functions on tensors: no model, no module, no state.

Shapes: B sequences, H heads, N tokens, C channels. `valid` [B, N] marks real tokens (False: padding or a
slot freed by earlier pruning); `protected` [B, N] marks tokens that are never removed ([CLS], [SEP]).
Attention `attn` [B, H, N, N] is row-stochastic: attn[b, h, i, j] is how much query i attends to key j.

Zero-TPrune (Wang, Dedhia, Jha, CVPR 2024): Weighted PageRank (WPR) on each head's attention graph, heads
aggregated by root-mean-square (EIR) over the heads a variance filter keeps (VHF), a similarity stage that
drops near-duplicate keys, in the order I' -> S -> I. Baselines at the same budget: truncation, random,
attention-to-[CLS] top-k, and ToMe's bipartite soft matching (Bolya et al., ICLR 2023) with size-weighted
merging.
"""
from __future__ import annotations

import math

import torch

NEG = float("-inf")
CACHE_BYTES = 8 << 20  # attention bytes WPR iterates on at a time


# ----------------------------------------------------------------------------- I-stage: WPR, VHF, EIR

def graph(attn: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The attention graph restricted to valid tokens: padding columns zeroed and rows renormalised, padding
    rows zeroed (a padding token neither receives nor casts votes)."""
    if valid is None:
        return attn
    v = valid[:, None, None, :].to(attn.dtype)
    a = attn * v
    a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(attn.dtype).tiny)
    return a * valid[:, None, :, None].to(attn.dtype)


def wpr_start(valid: torch.Tensor, heads: int, cls_weight: bool = False, dtype=torch.float32) -> torch.Tensor:
    """The WPR start [B, H, N]: uniform over valid tokens, or CLS-weighted (token 0 starts sqrt(N) times the
    others, N the sequence's valid count), normalised to sum 1."""
    s = valid.to(dtype)
    if cls_weight:
        s = s.clone()
        s[:, 0] = s[:, 0] * valid.sum(-1).to(dtype).sqrt()
    s = s / s.sum(-1, keepdim=True).clamp_min(1)
    return s[:, None, :].expand(-1, heads, -1).contiguous()


def wpr(attn: torch.Tensor, valid: torch.Tensor | None = None, iterations: int = 1,
        start: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted PageRank per head [B, H, N]: `iterations` steps of s <- A^T s (s_j = sum_i A[i, j] s_i) on
    `graph(attn, valid)`, computed without copying A: each row's mass on valid keys r_i = sum_j A[i, j] v_j
    renormalises the votes, s <- v * (A^T (s / r)).

    A row-stochastic A keeps sum(s) = 1, so this is the power iteration towards the stationary distribution of
    the attention Markov chain."""
    b, h, n, _ = attn.shape
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=attn.device)
    v = valid[:, None, :].to(attn.dtype)  # [B, 1, N]
    s = wpr_start(valid, h, dtype=attn.dtype) if start is None else start.to(attn.dtype)
    if iterations <= 0:
        return s * v
    out = torch.empty_like(s)
    # a few sequences at a time, so that their attention stays in cache across the iterations (the iteration
    # is a matrix-vector product: memory-bound when the whole batch's attention is streamed every time)
    step = max(1, CACHE_BYTES // max(1, h * n * n * attn.element_size()))
    for lo in range(0, b, step):
        a, vv, ss = attn[lo:lo + step], v[lo:lo + step], s[lo:lo + step]
        if bool(valid[lo:lo + step].all()):
            scale = vv  # rows of a softmax already sum to 1
        else:
            rows = (a * vv.unsqueeze(-2)).sum(-1).clamp_min(torch.finfo(attn.dtype).tiny)
            scale = vv / rows
        for _ in range(iterations):
            ss = ((ss * scale).unsqueeze(-2) @ a).squeeze(-2) * vv
        out[lo:lo + step] = ss
    return out


def head_variance(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Variance [B, H] of each head's scores over the valid tokens, scaled by the token count (N * s: a uniform
    head has variance 0 whatever N; a head on one token has variance N - 1)."""
    n = valid.sum(-1).clamp_min(1).to(scores.dtype)[:, None]  # [B, 1]
    m = valid[:, None, :].to(scores.dtype)
    x = scores * n[..., None]
    mean = (x * m).sum(-1) / n
    return (((x - mean[..., None]) ** 2) * m).sum(-1) / n


def vhf(scores: torch.Tensor, valid: torch.Tensor, vmin: float = 0.01, vmax: float = 0.7) -> torch.Tensor:
    """Variance-based head filter [B, H] bool: heads whose `head_variance` lies in [vmin, vmax]. A sequence
    where no head passes keeps all its heads (the filter never leaves a sequence without a score)."""
    var = head_variance(scores, valid)
    keep = (var >= vmin) & (var <= vmax)
    return keep | ~keep.any(-1, keepdim=True)


def eir(scores: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
    """Heads aggregated by root-mean-square [B, N] over the kept heads (all when `heads` is None)."""
    if heads is None:
        return scores.pow(2).mean(1).sqrt()
    w = heads.to(scores.dtype)[..., None]
    return ((scores.pow(2) * w).sum(1) / w.sum(1).clamp_min(1)).sqrt()


def importance(attn: torch.Tensor, valid: torch.Tensor, iterations: int, cls_weight: bool = False,
               vhf_range: tuple[float, float] | None = (0.01, 0.7)) -> torch.Tensor:
    """Zero-TPrune's I-stage score [B, N]: WPR per head, VHF, EIR; padding scores 0."""
    start = wpr_start(valid, attn.shape[1], cls_weight, attn.dtype)
    s = wpr(attn, valid, iterations, start)
    heads = vhf(s, valid, *vhf_range) if vhf_range is not None else None
    return eir(s, heads) * valid.to(s.dtype)


# ----------------------------------------------------------------------------- selection

def keep_top(scores: torch.Tensor, valid: torch.Tensor, protected: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Keep mask [B, N]: per sequence the protected tokens plus the highest-scoring others, `keep[b]` in all
    (never fewer than the protected ones, never padding). Ties go to the earlier token."""
    s = scores.masked_fill(~valid, NEG).masked_fill(protected & valid, float("inf"))
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order))
    k = torch.maximum(keep, (protected & valid).sum(-1))
    return (rank < k[:, None]) & valid


def similarity_drop(keys: torch.Tensor, order: torch.Tensor, valid: torch.Tensor, protected: torch.Tensor,
                    r: torch.Tensor) -> torch.Tensor:
    """Zero-TPrune's S-stage: drop mask [B, N] of at most r[b] near-duplicate tokens per sequence.

    The unprotected valid tokens are sorted by `order` (the I' pre-ranking); the less important half
    (floor(n/2) of them) is group A, every other valid token group B. Each A token's similarity is the largest
    cosine between its key and a B token's key; the r A tokens with the highest similarity are dropped (not
    merged)."""
    b, n = valid.shape
    cand = valid & ~protected
    s = order.masked_fill(~cand, float("inf"))
    idx = torch.sort(s, dim=-1, stable=True).indices
    rank = torch.empty_like(idx)
    rank.scatter_(-1, idx, torch.arange(n, device=s.device).expand_as(idx))
    half = cand.sum(-1) // 2
    in_a = cand & (rank < half[:, None])
    in_b = valid & ~in_a
    k = torch.nn.functional.normalize(keys.float(), dim=-1)
    sim = k @ k.transpose(-1, -2)
    sim = sim.masked_fill(~in_b[:, None, :], NEG)
    best = sim.max(-1).values.masked_fill(~in_a, NEG)  # [B, N]
    r = torch.minimum(r, half)
    top = torch.sort(best, dim=-1, descending=True, stable=True).indices
    pos = torch.empty_like(top)
    pos.scatter_(-1, top, torch.arange(n, device=s.device).expand_as(top))
    return in_a & (pos < r[:, None])


def zero_tprune_keep(attn: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, protected: torch.Tensor,
                     keep: torch.Tensor, iterations: int, *, similarity_share: float = 0.5, cls_weight: bool = False,
                     vhf_range: tuple[float, float] | None = (0.01, 0.7)) -> torch.Tensor:
    """Zero-TPrune's pruning layer, I' -> S -> I: keep mask [B, N] with `keep[b]` tokens per sequence.

    I': one WPR iteration ranks the tokens (prunes nothing); S: `similarity_share` of the tokens to remove go
    as near-duplicates; I: WPR (`iterations`) on the survivors' graph keeps the top `keep[b]`."""
    n_valid = valid.sum(-1)
    remove = (n_valid - keep).clamp_min(0)
    pre = importance(attn, valid, 1, cls_weight, vhf_range)
    r = torch.floor(remove.to(torch.float64) * similarity_share).to(remove.dtype)
    alive = valid & ~similarity_drop(keys, pre, valid, protected, r)
    final = importance(attn, alive, iterations, cls_weight, vhf_range)
    return keep_top(final, alive, protected, keep)


def truncate_scores(valid: torch.Tensor) -> torch.Tensor:
    """Truncation: earlier tokens score higher (keep the first ones)."""
    n = valid.shape[-1]
    return -torch.arange(n, device=valid.device, dtype=torch.float32).expand(valid.shape[0], n)


def cls_attention_scores(attn: torch.Tensor) -> torch.Tensor:
    """Attention from [CLS] (token 0) to every token, mean over heads [B, N] (EViT-like)."""
    return attn[:, :, 0, :].mean(1)


# ----------------------------------------------------------------------------- ToMe

def bipartite_merge(metric: torch.Tensor, valid: torch.Tensor, protected: torch.Tensor,
                    r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe's bipartite soft matching with per-sequence r: (merged [B, N] bool, dst [B, N] long).

    The unprotected valid tokens alternate, in position order, between set A (even) and set B (odd); each A
    token's edge goes to its most similar B token (cosine of `metric`); the r[b] A tokens with the strongest
    edges are merged into their B token (`dst`). Protected tokens are neither merged nor merged into."""
    b, n = valid.shape
    cand = valid & ~protected
    nth = torch.cumsum(cand.long(), -1) - 1
    in_a = cand & (nth % 2 == 0)
    in_b = cand & (nth % 2 == 1)
    m = torch.nn.functional.normalize(metric.float(), dim=-1)
    sim = (m @ m.transpose(-1, -2)).masked_fill(~in_b[:, None, :], NEG)
    best, dst = sim.max(-1)
    best = best.masked_fill(~in_a, NEG)
    r = torch.minimum(r, torch.minimum(in_a.sum(-1), in_b.sum(-1)))
    top = torch.sort(best, dim=-1, descending=True, stable=True).indices
    pos = torch.empty_like(top)
    pos.scatter_(-1, top, torch.arange(n, device=valid.device).expand_as(top))
    merged = in_a & (pos < r[:, None])
    return merged, dst


def merge_wavg(x: torch.Tensor, size: torch.Tensor, merged: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average of every merged token into its destination: (x', size') [B, N, C], [B, N]; the
    merged tokens' own rows are left as they were (they are dropped next)."""
    w = size * merged.to(size.dtype)
    target = torch.where(merged, dst, torch.arange(x.shape[1], device=x.device).expand_as(dst))
    total = size + torch.zeros_like(size).scatter_add_(-1, target, w)
    acc = x * size[..., None] + torch.zeros_like(x).scatter_add_(1, target[..., None].expand_as(x), x * w[..., None])
    new_x = torch.where(merged[..., None], x, acc / total.clamp_min(1e-12)[..., None])
    new_size = torch.where(merged, size, total)
    return new_x, new_size


# ----------------------------------------------------------------------------- compaction and budgets

def compact(keep: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Gather the kept tokens of each sequence, in their order, into the first slots; the width is the largest
    kept count. Returns (valid [B, W], the tensors gathered along dim 1)."""
    n = keep.shape[1]
    ar = torch.arange(n, device=keep.device).expand_as(keep)
    order = torch.sort(torch.where(keep, ar, ar + n), dim=-1).indices
    width = int(keep.sum(-1).max())
    idx = order[:, :width]
    valid = torch.gather(keep, 1, idx)
    out = []
    for t in tensors:
        index = idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
        out.append(torch.gather(t, 1, index))
    return valid, out


def keep_counts(lengths: torch.Tensor, ratio: float | torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Tokens to keep per sequence at a cumulative keep `ratio` (one, or [B] one per sequence) of its input
    length: ceil(ratio * length), never fewer than its protected tokens."""
    k = torch.ceil(lengths.to(torch.float64) * ratio - 1e-9).to(lengths.dtype)
    return torch.maximum(k, protected.sum(-1))


def layer_flops(n_in: float, n_out: float, hidden: int, intermediate: int) -> float:
    """Multiply-accumulates x 2 of one encoder layer whose attention sees n_in tokens and whose MLP n_out
    (pruning between the two): q, k, v, o projections, scores and weighted sum, two MLP matrices."""
    return 2.0 * (4 * n_in * hidden * hidden + 2 * n_in * n_in * hidden + 2 * n_out * hidden * intermediate)


def default_iterations(layer: int, layers: int) -> int:
    """WPR iterations per layer as in the paper: 30 in the first third of the layers, 5 in the middle, 1 in the
    last third (the paper: 30-50, 5-10, 1)."""
    third = max(1, math.ceil(layers / 3))
    if layer < third:
        return 30
    return 1 if layer >= layers - third else 5
