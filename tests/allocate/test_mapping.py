import numpy as np
import pytest

from kenprune.allocate.mapping import MAX_RATIO, fit_to_target, scores_to_ratios, weighted_mean
from kenprune.errors import KenpruneError


@pytest.mark.parametrize("target", [0.0, 0.3, 0.7, 0.95])
def test_fit_meets_weighted_target_and_bounds(target):
    rng = np.random.default_rng(0)
    ratios, sizes = rng.uniform(-0.5, 1.5, 50), rng.integers(1, 1000, 50)
    out = fit_to_target(ratios, sizes, target)
    assert abs(weighted_mean(out, sizes) - target) < 1e-12
    assert out.min() >= 0.0 and out.max() <= MAX_RATIO < 1.0


def test_fit_keeps_order_and_spacing_when_nothing_clips():
    out = fit_to_target([0.1, 0.2, 0.4], [1, 1, 2], 0.5)
    assert np.allclose(np.diff(out), [0.1, 0.2])


def test_mapping_spreads_two_lambda_and_flips_for_dsa():
    owl = scores_to_ratios([1.0, 2.0, 3.0], [1, 1, 1], 0.7, 0.08, higher="denser")
    dsa = scores_to_ratios([1.0, 2.0, 3.0], [1, 1, 1], 0.7, 0.08, higher="sparser")
    assert np.allclose(owl, [0.78, 0.70, 0.62]) and np.allclose(dsa, [0.62, 0.70, 0.78])


@pytest.mark.parametrize("target,lam,match", [(1.0, 0.0, "in \\[0, 1\\)"), (-0.1, 0.0, "in \\[0, 1\\)"),
                                              (0.9, 0.2, "too large"), (0.5, -1, ">= 0")])
def test_bad_target_and_lambda_are_one_line_errors(target, lam, match):
    with pytest.raises(KenpruneError, match=match):
        scores_to_ratios([1.0, 2.0], [1, 1], target, lam)
