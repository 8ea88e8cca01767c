"""Latency measurement and MAC-count ideal ratios."""
from __future__ import annotations

import copy

from kenprune.evaluate.latency import mac_count, measure_latency, speedup
from kenprune.structured.plan import PrunePlan
from kenprune.structured.prune import prune_structured


def test_mac_count_follows_the_pruned_widths_and_latency_is_measured(tiny_loaded):
    dense = copy.deepcopy(tiny_loaded.model)
    prune_structured(tiny_loaded, PrunePlan(0.5, round_to=1), importance="l1", progress=False)
    # one new token after 9 cached: per block q,k,v,o + gate,up,down + 2*heads*head_dim*10 context; LM head 48 x vocab
    head = 48 * dense.config.vocab_size
    dense_decode = mac_count(dense, 1, 9, 1)
    assert dense_decode == 4 * ((2304 + 768 + 768 + 2304) + 3 * 48 * 96 + 2 * 6 * 8 * 10) + head
    pruned_decode = mac_count(tiny_loaded.model, 1, 9, 1)  # 2 of 6 query heads, 48 of 96 channels left
    assert pruned_decode == 4 * ((768 + 768 + 768 + 768) + 3 * 48 * 48 + 2 * 2 * 8 * 10) + head
    timings = [measure_latency(m, prefill_tokens=16, decode_tokens=4, prompt_tokens=4, warmup=0, repeats=1)
               for m in (dense, tiny_loaded.model)]
    assert all(t["prefill_seconds"] > 0 and t["decode_tokens_per_second"] > 0 for t in timings)
    ratios = speedup(*timings)
    assert ratios["decode_ideal"] == mac_count(dense, 1, 4 + 2, 1) / mac_count(tiny_loaded.model, 1, 4 + 2, 1)
    assert ratios["prefill_ideal"] > 1
