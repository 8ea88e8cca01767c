"""The token pruning math against computations written out in the tests."""
from __future__ import annotations


import pytest
import torch

from kenprune.tokens import functional as F


def _attention(b, h, n, seed=0, sharp=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharp * torch.randn(b, h, n, n, generator=g, dtype=torch.float64), -1)


def _stationary(a: torch.Tensor) -> torch.Tensor:
    """The left eigenvector of a row-stochastic matrix for eigenvalue 1, normalised to sum 1."""
    values, vectors = torch.linalg.eig(a.T)
    v = vectors[:, torch.argmin((values - 1).abs())].real
    return v / v.sum()


def test_wpr_converges_to_the_stationary_distribution_of_a_hand_made_graph():
    # 4 tokens: everyone attends mostly to token 2, token 2 to token 0
    a = torch.tensor([[0.1, 0.1, 0.7, 0.1],
                      [0.2, 0.1, 0.6, 0.1],
                      [0.6, 0.1, 0.2, 0.1],
                      [0.1, 0.3, 0.5, 0.1]], dtype=torch.float64)
    s = F.wpr(a[None, None], iterations=200)[0, 0]
    assert torch.allclose(s, _stationary(a), atol=1e-10)
    assert s.argmax() == 2 and abs(float(s.sum()) - 1) < 1e-12


def test_wpr_one_step_is_attention_received_from_a_uniform_start():
    a = _attention(2, 3, 5)
    s = F.wpr(a, iterations=1)
    assert torch.allclose(s, a.sum(-2) / 5)


def test_cls_weighted_start_gives_cls_sqrt_n_times_the_others():
    valid = torch.tensor([[True] * 9 + [False] * 3])
    s = F.wpr_start(valid, heads=2, cls_weight=True, dtype=torch.float64)[0, 0]
    assert s[0] / s[1] == pytest.approx(3.0) and float(s[9:].abs().sum()) == 0 and float(s.sum()) == pytest.approx(1)


def test_padding_never_gets_votes():
    """A padded graph scores its valid tokens exactly as the graph restricted to them; padding scores 0 and
    casts no vote, whatever its attention rows and columns hold."""
    n, pad = 6, 3
    a = _attention(1, 2, n + pad, seed=3)  # padding rows/columns carry real mass on purpose
    valid = torch.tensor([[True] * n + [False] * pad])
    sub = a[..., :n, :n]
    sub = sub / sub.sum(-1, keepdim=True)
    for iterations in (1, 7, 40):
        got = F.wpr(a, valid, iterations)
        assert float(got[..., n:].abs().max()) == 0
        assert torch.allclose(got[..., :n], F.wpr(sub, None, iterations), atol=1e-12)
    scores = F.importance(a.float(), valid, 5)
    assert float(scores[0, n:].abs().max()) == 0


def test_vhf_drops_exactly_the_heads_built_to_fail_it():
    n = 10
    valid = torch.ones(1, n, dtype=torch.bool)
    uniform = torch.full((n,), 1 / n)                       # variance 0: below 0.01
    peaked = torch.tensor([0.9] + [0.1 / 9] * 9)            # N*s: 9 and 0.11: variance 7.1, above 0.7
    moderate = torch.linspace(0.5, 1.5, n) / n              # N*s from 0.5 to 1.5: variance 0.102
    moderate = moderate / moderate.sum()
    slight = (torch.arange(n) % 2 * 0.1 + 0.95) / n         # variance 0.0025: below 0.01
    scores = torch.stack([uniform, peaked, moderate, slight, moderate.flip(0)])[None].double()
    var = F.head_variance(scores, valid)[0]
    expected_var = [((n * h - (n * h).mean()) ** 2).mean() for h in scores[0]]
    assert torch.allclose(var, torch.stack(expected_var))
    assert F.vhf(scores, valid).tolist() == [[False, False, True, False, True]]
    # EIR: root-mean-square over the kept heads only
    rms = F.eir(scores, F.vhf(scores, valid))
    assert torch.allclose(rms[0], ((moderate ** 2 + moderate.flip(0) ** 2) / 2).sqrt().double())
    # a sequence where no head passes keeps them all
    assert F.vhf(scores[:, :2], valid).tolist() == [[True, True]]


def test_similarity_stage_drops_exactly_the_pairs_a_direct_computation_finds():
    g = torch.Generator().manual_seed(0)
    b, n, c = 3, 12, 8
    keys = torch.randn(b, n, c, generator=g)
    keys[:, 7] = keys[:, 3] + 0.01 * torch.randn(b, c, generator=g)  # a near-duplicate pair
    order = torch.rand(b, n, generator=g)
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[2, 9:] = False
    protected = torch.zeros(b, n, dtype=torch.bool)
    protected[:, 0] = True
    r = torch.tensor([3, 1, 2])
    got = F.similarity_drop(keys, order, valid, protected, r)
    for i in range(b):
        cand = [j for j in range(n) if valid[i, j] and not protected[i, j]]
        ranked = sorted(cand, key=lambda j: (float(order[i, j]), j))
        group_a = ranked[:len(cand) // 2]
        group_b = [j for j in range(n) if valid[i, j] and j not in group_a]
        cos = lambda x, y: float(torch.nn.functional.cosine_similarity(keys[i, x], keys[i, y], dim=0))
        best = {a: max(cos(a, bb) for bb in group_b) for a in group_a}
        dropped = sorted(sorted(group_a, key=lambda a: -best[a])[:int(r[i])])
        assert torch.nonzero(got[i]).flatten().tolist() == dropped
        assert not got[i, ~valid[i]].any() and not got[i, 0]


def test_keep_top_keeps_protected_tokens_and_the_budget_per_sequence():
    scores = torch.tensor([[0.0, 5, 4, 3, 2, 1], [9.0, 1, 2, 3, 0, 0]])
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    protected = torch.tensor([[True, False, False, False, False, True], [True, False, False, True, False, False]])
    keep = F.keep_top(scores, valid, protected, torch.tensor([3, 3]))
    assert keep.tolist() == [[True, True, False, False, False, True], [True, False, True, True, False, False]]


def test_zero_tprune_keeps_the_budget_and_never_a_protected_or_padding_token():
    a = _attention(2, 4, 10, seed=5).float()
    keys = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(1))
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 7:] = False
    protected = torch.zeros_like(valid)
    protected[:, 0] = True
    protected[0, 9] = protected[1, 6] = True
    keep = F.zero_tprune_keep(a, keys, valid, protected, torch.tensor([5, 4]), iterations=10)
    assert keep.sum(-1).tolist() == [5, 4]
    assert keep[0, 0] and keep[0, 9] and keep[1, 0] and keep[1, 6] and not keep[1, 7:].any()


def test_tome_merges_the_most_similar_pairs_with_size_weights():
    x = torch.tensor([[[0.0, 1], [1.0, 0], [0.1, 1], [5.0, 5], [1.0, 0.1]]])
    size = torch.tensor([[1.0, 1, 2, 1, 3]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    protected = torch.tensor([[True, False, False, False, False]])
    # unprotected tokens 1..4 alternate: A = {1, 3}, B = {2, 4}; 1 is nearly parallel to 4
    merged, dst = F.bipartite_merge(x, valid, protected, torch.tensor([1]))
    assert merged.tolist() == [[False, True, False, False, False]] and int(dst[0, 1]) == 4
    new_x, new_size = F.merge_wavg(x, size, merged, dst)
    assert torch.allclose(new_x[0, 4], (1 * x[0, 1] + 3 * x[0, 4]) / 4) and float(new_size[0, 4]) == 4
    assert torch.equal(new_x[0, [0, 2, 3]], x[0, [0, 2, 3]])


def test_compact_gathers_kept_tokens_in_order():
    keep = torch.tensor([[True, False, True, True], [False, True, False, False]])
    x = torch.arange(8.0).view(2, 4, 1)
    valid, (gathered,) = F.compact(keep, x)
    assert valid.tolist() == [[True, True, True], [True, False, False]]
    assert gathered[0, :, 0].tolist() == [0, 2, 3] and gathered[1, 0, 0] == 5


@pytest.mark.parametrize("layers,expected", [(6, [30, 30, 5, 5, 1, 1]), (12, [30] * 4 + [5] * 4 + [1] * 4)])
def test_iteration_schedule_by_thirds(layers, expected):
    assert [F.default_iterations(i, layers) for i in range(layers)] == expected


def test_keep_counts_round_up_and_cover_protected_tokens():
    lengths = torch.tensor([10, 3, 7])
    protected = torch.tensor([[True, True] + [False] * 8, [True, True, True] + [False] * 7, [True] + [False] * 9])
    assert F.keep_counts(lengths, 0.25, protected).tolist() == [3, 3, 2]
