"""Measured inference speed (prefill latency, batch-1 decode tokens/s) and the ideal ratio from MAC counts.

Timings are medians over repeats after warmup; compare models only within one run (ratios), since
the machine's load changes between runs.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from ..models.blocks import block_linears, find_blocks, linear_weight
from ..models.families import adapter_for


def _random_ids(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=gen).to(next(model.parameters()).device)


def _median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def measure_latency(model: nn.Module, *, prefill_tokens: int = 512, decode_tokens: int = 32,
                    prompt_tokens: int = 32, warmup: int = 1, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Prefill of `prefill_tokens` (seconds, last-token logits only, as generation does) and batch-1
    greedy decode speed (tokens/s over `decode_tokens` steps after a `prompt_tokens` prompt)."""
    model.eval()
    prefill_ids = _random_ids(model, prefill_tokens, seed)
    prompt_ids = _random_ids(model, prompt_tokens, seed + 1)

    def prefill() -> None:
        model(input_ids=prefill_ids, use_cache=False, logits_to_keep=1)

    def decode() -> None:
        out = model(input_ids=prompt_ids, use_cache=True, logits_to_keep=1)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(decode_tokens):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)

    def prompt_only() -> None:
        model(input_ids=prompt_ids, use_cache=True, logits_to_keep=1)

    prefill_s = _median_seconds(prefill, warmup, repeats)
    decode_s = _median_seconds(decode, warmup, repeats) - _median_seconds(prompt_only, warmup, repeats)
    return {"prefill_tokens": prefill_tokens, "prefill_seconds": prefill_s,
            "decode_tokens": decode_tokens, "prompt_tokens": prompt_tokens,
            "decode_tokens_per_second": decode_tokens / max(decode_s, 1e-9),
            "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
            "macs_prefill": mac_count(model, prefill_tokens, 0, 1),
            "macs_decode_token": mac_count(model, 1, prompt_tokens + decode_tokens // 2, 1)}


def mac_count(model: nn.Module, new_tokens: int, past_tokens: int, logits_tokens: int) -> int:
    """Multiply-accumulates of one forward over `new_tokens` after `past_tokens` cached ones:
    every Linear (or Conv1D) in the blocks, attention scores and weighted sums (each block's own
    head count, so pruned blocks count right), and the LM head for `logits_tokens` positions."""
    adapter = adapter_for(model)
    d = adapter.head_dim(model.config)
    contexts = sum(past_tokens + i + 1 for i in range(new_tokens))  # causal: position i sees past + i + 1
    total = 0
    for block in find_blocks(model)[1]:
        total += new_tokens * sum(linear_weight(m).numel() for m in block_linears(block).values())
        total += 2 * adapter.block_heads(block, model.config) * d * contexts
    head = model.get_output_embeddings()
    if head is not None:
        total += logits_tokens * linear_weight(head).numel()
    return total


def compare_latency(dense: nn.Module, pruned: nn.Module, *, rounds: int = 5,
                    **settings: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """Latency of both models measured alternately (one repeat each per round, median over rounds), so
    load changes on a shared machine hit both alike; returns (dense, pruned, speedup)."""
    runs: list[list[dict[str, Any]]] = [[], []]
    for round_index in range(rounds):
        for i, model in enumerate((dense, pruned)):
            runs[i].append(measure_latency(model, warmup=1 if round_index == 0 else 0, repeats=1, **settings))
    medians = []
    for results in runs:
        merged = dict(results[0])
        for key in ("prefill_seconds", "decode_tokens_per_second"):
            merged[f"{key}_all"] = [r[key] for r in results]
            merged[key] = statistics.median(merged[f"{key}_all"])
        merged.update(repeats=rounds, warmup=1)
        medians.append(merged)
    return medians[0], medians[1], speedup(medians[0], medians[1])


def latency_flags(dense: dict[str, Any], pruned: dict[str, Any], ratios: dict[str, float],
                  above_ideal: float = 1.02) -> list[str]:
    """Reasons not to trust a measured speed-up, one line each, each starting with its phase: above its
    ideal (MAC-count) ratio, or a difference between the medians smaller than the range of either side's
    repeated timings. Empty when the figures stand."""
    flags = []
    for phase, key, unit in (("prefill", "prefill_seconds", "s"), ("decode", "decode_tokens_per_second", "tokens/s")):
        measured, ideal = ratios[f"{phase}_measured"], ratios[f"{phase}_ideal"]
        if measured > ideal * above_ideal:
            flags.append(f"{phase} speed-up {measured:.2f}x is above its ideal {ideal:.2f}x: the timing is not "
                         f"trustworthy (a loaded machine, or too few repeats)")
        runs = [side.get(f"{key}_all") or [side[key]] for side in (dense, pruned)]
        spread = max(max(r) - min(r) for r in runs)
        difference = abs(dense[key] - pruned[key])
        if spread > difference:
            flags.append(f"{phase}: the spread of the repeats ({spread:.3g} {unit}) is wider than the difference "
                         f"between dense and pruned ({difference:.3g} {unit}): no measured effect; raise "
                         f"--latency-repeats or quiet the machine")
    return flags


def speedup(dense: dict[str, Any], pruned: dict[str, Any]) -> dict[str, float]:
    """Measured and ideal (MAC-count) speed-ups of `pruned` over `dense`."""
    return {"prefill_measured": dense["prefill_seconds"] / pruned["prefill_seconds"],
            "prefill_ideal": dense["macs_prefill"] / pruned["macs_prefill"],
            "decode_measured": pruned["decode_tokens_per_second"] / dense["decode_tokens_per_second"],
            "decode_ideal": dense["macs_decode_token"] / pruned["macs_decode_token"]}


def latency_row(dense: dict[str, Any], pruned: dict[str, Any], ratios: dict[str, float]) -> dict[str, float]:
    """The flat table row benchmarks report for one `compare_latency` result."""
    return {"dense_prefill_s": dense["prefill_seconds"], "pruned_prefill_s": pruned["prefill_seconds"],
            "prefill_speedup": ratios["prefill_measured"], "prefill_ideal": ratios["prefill_ideal"],
            "dense_decode_tok_s": dense["decode_tokens_per_second"],
            "pruned_decode_tok_s": pruned["decode_tokens_per_second"],
            "decode_speedup": ratios["decode_measured"], "decode_ideal": ratios["decode_ideal"],
            "decode_vs_ideal": ratios["decode_measured"] / ratios["decode_ideal"]}
