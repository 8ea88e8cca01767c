"""Measurement helpers: recall@k, cosine statistics, FLOPs from token counts, alternating latency."""
from __future__ import annotations

import pytest
import torch

from kenprune.tokens import functional as F
from kenprune.tokens.measure import alternating_latency, cosine_stats, flops, recall_at_k


def test_recall_at_k_is_one_for_the_same_space_and_counts_overlaps():
    x = torch.nn.functional.normalize(torch.randn(30, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert recall_at_k(x, x.clone(), 5) == 1.0
    # points on a line: neighbours by distance; reversing the order of the space changes nothing
    line = torch.stack([torch.cos(torch.linspace(0, 1, 12)), torch.sin(torch.linspace(0, 1, 12))], -1)
    assert recall_at_k(line, line.flip(0).flip(0), 3) == 1.0
    shuffled = x[torch.randperm(30, generator=torch.Generator().manual_seed(1))]
    manual = sum(len(set((x @ x.T).fill_diagonal_(-9).topk(5).indices[i].tolist())
                     & set((shuffled @ shuffled.T).fill_diagonal_(-9).topk(5).indices[i].tolist())) / 5
                 for i in range(30)) / 30
    assert recall_at_k(x, shuffled, 5) == pytest.approx(manual)


def test_cosine_stats():
    a = torch.eye(4)
    b = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, -1]])
    s = cosine_stats(a, b)
    assert s["cosine_mean"] == pytest.approx((1 + 1 + 0.5 ** 0.5 - 1) / 4) and s["cosine_min"] == pytest.approx(-1)


def test_flops_follow_the_token_counts():
    class C:
        hidden_size, intermediate_size = 8, 32

    dense = flops([(10, 10), (10, 10)], C, 1)
    assert dense == 2 * F.layer_flops(10, 10, 8, 32)
    assert flops([(20, 20), (20, 10)], C, 2) == 2 * (F.layer_flops(10, 10, 8, 32) + F.layer_flops(10, 5, 8, 32))
    assert flops([(10, 10), (10, 5)], C, 1) < dense


def test_alternating_latency_alternates_and_reports_medians():
    calls = []
    result = alternating_latency(lambda: calls.append("d"), lambda: calls.append("p"), repeats=4, warmup=1)
    assert calls == ["d", "p", "d", "p", "p", "d", "d", "p", "p", "d"]
    assert len(result["dense"]["seconds_all"]) == 4 and result["speedup"] > 0 and len(result["loadavg"]["before"]) == 3


@torch.inference_mode()
def test_sequence_flops_count_each_input_from_its_own_tokens(tiny_bert):
    from kenprune.tokens import apply_token_pruning, remove_token_pruning
    from kenprune.tokens.measure import sequence_flops
    from tests.tokens.test_schedule import encoder_cost

    h, m = tiny_bert.config.hidden_size, tiny_bert.config.intermediate_size
    ids = torch.randint(5, 100, (2, 30), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, 10:] = 0
    tiny_bert(input_ids=ids, attention_mask=mask)
    dense = encoder_cost([(30, 30)] * 3, h, m) + encoder_cost([(10, 10)] * 3, h, m)
    assert sequence_flops(tiny_bert, mask) == pytest.approx((dense, dense))  # unpatched: dense both
    try:
        apply_token_pruning(tiny_bert, "truncate", 0.5)
        tiny_bert(input_ids=ids, attention_mask=mask)
        d, p = sequence_flops(tiny_bert, mask)
    finally:
        remove_token_pruning(tiny_bert)
    # truncate at 0.5 in layer 1 of 3: 30 -> 15 and 10 -> 5 tokens
    expected = encoder_cost([(30, 30), (30, 15), (15, 15)], h, m) + encoder_cost([(10, 10), (10, 5), (5, 5)], h, m)
    assert d == pytest.approx(dense) and p == pytest.approx(expected)
