import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.methods import Pattern, check_sparsity, nm_mask, select, unstructured_mask


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.7, 0.99])
def test_per_row_groups_hold_exactly_the_requested_sparsity(sparsity):
    scores = torch.randn(37, 96)
    mask = unstructured_mask(scores, sparsity, "row")
    assert (mask.sum(dim=1) == int(96 * sparsity)).all()
    # the pruned ones are the lowest of their row
    kept_min = scores.masked_fill(mask, float("inf")).min(dim=1).values
    pruned_max = scores.masked_fill(~mask, float("-inf")).max(dim=1).values
    assert (pruned_max <= kept_min).all()


def test_per_matrix_group_prunes_the_global_lowest():
    scores = torch.randn(20, 30)
    mask = unstructured_mask(scores, 0.4, "matrix")
    assert int(mask.sum()) == 240
    assert scores[mask].max() <= scores[~mask].min()


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 8), (5, 16)])
def test_every_nm_group_has_exactly_n_zeros(n, m):
    scores = torch.randn(16, 64)
    mask = nm_mask(scores, n, m)
    assert (mask.view(16, -1, m).sum(dim=-1) == n).all()


def test_ties_break_towards_the_lower_index_deterministically():
    scores = torch.ones(3, 8)  # all tied, like 4-bit weights
    assert unstructured_mask(scores, 0.5, "row")[:, :4].all()
    assert nm_mask(scores, 2, 4).view(3, 2, 4)[..., :2].all()
    assert torch.equal(select(scores, 0.5, Pattern()), select(scores.clone(), 0.5, Pattern()))


@pytest.mark.parametrize("text", ["4:2", "2:2", "2.5:4", "a:b", "0:4", "2-4", "2:"])
def test_bad_patterns_are_one_line_errors(text):
    with pytest.raises(KenpruneError, match="N:M"):
        Pattern.parse(text)


def test_pattern_parse_and_sparsity():
    assert Pattern.parse("2:4") == Pattern(2, 4) and Pattern.parse("2:4").sparsity == 0.5
    assert not Pattern.parse("unstructured").is_nm and not Pattern.parse(None).is_nm
    for bad in (-0.1, 1.0, 1.5, "x"):
        with pytest.raises(KenpruneError, match=r"\[0, 1\)"):
            check_sparsity(bad)


def test_nm_needs_columns_divisible_by_m():
    with pytest.raises(KenpruneError, match="multiple of M=8"):
        nm_mask(torch.randn(4, 12), 4, 8)
