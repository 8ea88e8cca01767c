"""Latency measurement and MAC-count ideal ratios."""
from __future__ import annotations

import copy

import pytest

from kenprune.evaluate.latency import mac_count, measure_latency, speedup
from kenprune.structured.plan import PrunePlan
from kenprune.structured.prune import prune_structured
from kenprune.testing import tiny_causal_lm


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


# per-block Linear MACs per token of kenprune.testing's tiny models (hidden 64, 4 heads of 16):
# llama q,o 64x64, k,v 64x32 (2 kv heads), gate/up/down 64x128; gpt2 c_attn 64x192, attn c_proj 64x64,
# c_fc 64x256, mlp c_proj 256x64 (Conv1D); opt q,k,v,out_proj 64x64, fc1/fc2 64x128
BLOCK_LINEAR_MACS = {"llama": 2 * 4096 + 2 * 2048 + 3 * 8192, "gpt2": 12288 + 4096 + 2 * 16384,
                     "opt": 4 * 4096 + 2 * 8192}


@pytest.mark.parametrize("arch", sorted(BLOCK_LINEAR_MACS))
def test_mac_count_is_the_hand_count_for_every_tiny_family(arch):
    model = tiny_causal_lm(arch, layers=2, hidden=64, vocab=128)
    contexts = 6 + 7 + 8  # 3 new tokens after 5 cached
    attention = 2 * 4 * 16 * contexts  # scores and weighted sums: heads x head_dim x contexts
    per_block = 3 * BLOCK_LINEAR_MACS[arch] + attention
    assert mac_count(model, 3, 5, 2) == 2 * per_block + 2 * 64 * 128  # 2 blocks, LM head for 2 positions


def test_latency_flags_a_speedup_above_its_ideal_and_a_spread_wider_than_the_effect():
    from kenprune.evaluate.latency import latency_flags

    steady = {"prefill_seconds": 1.0, "prefill_seconds_all": [1.0, 1.0, 1.0],
              "decode_tokens_per_second": 10.0, "decode_tokens_per_second_all": [10.0, 10.0, 10.0]}
    fast = {"prefill_seconds": 0.5, "prefill_seconds_all": [0.5, 0.5, 0.5],
            "decode_tokens_per_second": 20.0, "decode_tokens_per_second_all": [20.0, 20.0, 20.0]}
    fine = {"prefill_measured": 2.0, "prefill_ideal": 2.1, "decode_measured": 2.0, "decode_ideal": 2.1}
    assert latency_flags(steady, fast, fine) == []
    too_fast = {**fine, "prefill_measured": 2.49, "prefill_ideal": 1.28}
    [flag] = latency_flags(steady, fast, too_fast)
    assert flag.startswith("prefill speed-up 2.49x is above its ideal 1.28x")
    noisy = {**steady, "decode_tokens_per_second_all": [6.0, 10.0, 14.0]}  # a range of 8 tokens/s
    close = {**fast, "decode_tokens_per_second": 11.0, "decode_tokens_per_second_all": [11.0, 11.0, 11.0]}
    [flag] = latency_flags(noisy, close, {**fine, "decode_measured": 1.1})
    assert flag.startswith("decode: the spread of the repeats (8 tokens/s) is wider than the difference between "
                           "dense and pruned (1 tokens/s)")
