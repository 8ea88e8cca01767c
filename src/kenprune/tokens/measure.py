"""What token pruning costs and keeps: texts, embeddings, fidelity, FLOPs from real token counts, latency.

Shared by `kenprune tokens` (jobs/tokens.py) and benchmarks/token_pruning.py.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import functional as F
from .adapters import token_adapter_for
from .patch import pool


def paragraphs(docs: Sequence[Any], min_words: int = 8) -> list[str]:
    """Every non-empty line of the documents with at least `min_words` words (headings and list debris out)."""
    return [line.strip() for doc in docs for line in doc.text.split("\n") if len(line.split()) >= min_words]


def passages(docs: Sequence[Any], tokenizer: Any, length: int, min_words: int = 8) -> list[str]:
    """Texts of about `length` tokens: consecutive paragraphs of one document joined until they reach `length`
    tokens (then cut there when encoded); a document's short tail is left out."""
    out: list[str] = []
    for doc in docs:
        current: list[str] = []
        count = 0
        for line in (p for p in doc.text.split("\n") if len(p.split()) >= min_words):
            current.append(line.strip())
            count += len(tokenizer(line, add_special_tokens=False)["input_ids"])
            if count + 2 >= length:
                out.append(" ".join(current))
                current, count = [], 0
    return out


def encode(tokenizer: Any, texts: Sequence[str], seqlen: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=seqlen, return_tensors="pt"))


@torch.inference_mode()
def embed(model: nn.Module, tokenizer: Any, texts: Sequence[str], seqlen: int, batch_size: int = 32,
          classifier: bool = False, progress: bool = False, counts: list | None = None,
          exact_flops: list | None = None) -> torch.Tensor:
    """Sentence vectors (mean over the surviving tokens, size-weighted, L2-normalised) or, for a classifier,
    logits [len(texts), C]. `counts`: extended with each batch's (layer, tokens in, tokens out) sums;
    `exact_flops`: with each batch's (dense, pruned) FLOPs from every sequence's own counts (`sequence_flops`)."""
    out = []
    for i in tqdm(range(0, len(texts), batch_size), desc="encode", disable=not progress, leave=False):
        enc = encode(tokenizer, texts[i:i + batch_size], seqlen)
        result = model(**enc)
        if classifier:
            out.append(result.logits.float())
        else:
            out.append(torch.nn.functional.normalize(pool(model, result.last_hidden_state, enc["attention_mask"]),
                                                     dim=-1))
        if counts is not None:
            counts.append(layer_counts(model, enc["attention_mask"]))
        if exact_flops is not None:
            exact_flops.append(sequence_flops(model, enc["attention_mask"]))
    return torch.cat(out)


def layer_counts(model: nn.Module, attention_mask: torch.Tensor) -> list[tuple[int, int]]:
    """(tokens in, tokens out) per layer, summed over the batch, of the model's last forward (dense: the mask)."""
    patch = getattr(model, "token_pruning", None)
    if patch is not None and patch.last is not None:
        return [(int(a.sum()), int(b.sum())) for a, b in patch.last.counts]
    total = int(attention_mask.sum())
    layers = len(token_adapter_for(model).layers(getattr(model, "base_model", model)))
    return [(total, total)] * layers


def sequence_flops(model: nn.Module, attention_mask: torch.Tensor) -> tuple[float, float]:
    """(dense, pruned) encoder FLOPs of the last forward, each sequence from its own token counts per layer
    (exact where `flops` on mean counts approximates the attention's square term over mixed lengths)."""
    config = model.config
    lengths = attention_mask.sum(-1).tolist()
    patch = getattr(model, "token_pruning", None)
    layers = len(token_adapter_for(model).layers(getattr(model, "base_model", model)))
    per_layer = patch.last.counts if patch is not None and patch.last is not None else \
        [(torch.tensor(lengths), torch.tensor(lengths))] * layers
    dense = sum(layers * F.layer_flops(n, n, config.hidden_size, config.intermediate_size) for n in lengths)
    pruned = sum(F.layer_flops(float(a), float(b), config.hidden_size, config.intermediate_size)
                 for n_in, n_out in per_layer for a, b in zip(n_in.tolist(), n_out.tolist()))
    return dense, pruned


def summed_counts(counts: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    return [(sum(c[i][0] for c in counts), sum(c[i][1] for c in counts)) for i in range(len(counts[0]))]


def flops(counts: Sequence[tuple[float, float]], config: Any, sequences: int) -> float:
    """Encoder FLOPs from real token counts per layer (per-sequence means), for `sequences` sequences."""
    total = 0.0
    for n_in, n_out in counts:
        total += F.layer_flops(n_in / sequences, n_out / sequences, config.hidden_size, config.intermediate_size)
    return total * sequences


def cosine_stats(dense: torch.Tensor, pruned: torch.Tensor) -> dict[str, float]:
    """Cosine of each pruned vector to its dense one: mean, 5th percentile, minimum."""
    cos = torch.nn.functional.cosine_similarity(dense, pruned, dim=-1).double()
    return {"cosine_mean": float(cos.mean()), "cosine_p5": float(torch.quantile(cos, 0.05)),
            "cosine_min": float(cos.min()), "n": int(cos.numel())}


def recall_at_k(dense: torch.Tensor, pruned: torch.Tensor, k: int = 10) -> float:
    """Mean overlap of each text's k nearest neighbours (itself excluded) among the dense vectors and among the
    pruned vectors, both searched in their own space."""
    def neighbours(x: torch.Tensor) -> torch.Tensor:
        sim = x @ x.T
        sim.fill_diagonal_(-float("inf"))
        return sim.topk(k, dim=-1).indices

    a, b = neighbours(dense.double()), neighbours(pruned.double())
    hits = (a[:, :, None] == b[:, None, :]).any(-1).double().mean()
    return float(hits)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@torch.inference_mode()
def alternating_latency(run_dense: Callable[[], Any], run_pruned: Callable[[], Any], repeats: int,
                        warmup: int = 1) -> dict[str, Any]:
    """Seconds per call of two callables measured in alternation (A, B, A, B, ...) after `warmup` calls each;
    medians, p90s, the median speed-up (dense / pruned) and the load average before and after."""
    load_before = os.getloadavg()
    for _ in range(warmup):
        run_dense()
        run_pruned()
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    for i in range(repeats):
        order = (("dense", run_dense), ("pruned", run_pruned)) if i % 2 == 0 else \
            (("pruned", run_pruned), ("dense", run_dense))
        for name, fn in order:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {}
    for name, values in times.items():
        out[name] = {"seconds_all": values, "median": statistics.median(values), "p90": percentile(values, 0.9)}
    out["speedup"] = out["dense"]["median"] / out["pruned"]["median"]
    out["speedup_p90"] = out["dense"]["p90"] / out["pruned"]["p90"]
    out["loadavg"] = {"before": list(load_before), "after": list(os.getloadavg())}
    out["threads"] = torch.get_num_threads()
    out["repeats"] = repeats
    return out
