"""Kernel normalisation: each is a density (integrates to 1) with scikit-learn's constants."""
from __future__ import annotations

import math

import pytest
import torch

from kenprune.ken.kernels import KERNELS

SKLEARN_NORMS = {"gaussian": 1 / math.sqrt(2 * math.pi), "tophat": 0.5, "epanechnikov": 0.75,
                 "exponential": 0.5, "linear": 1.0, "cosine": math.pi / 4}


@pytest.mark.parametrize("name", KERNELS.names())
def test_kernel_integrates_to_one(name):
    kernel = KERNELS.get(name)
    assert kernel.norm == pytest.approx(SKLEARN_NORMS[name])
    u = torch.linspace(-40, 40, 800001, dtype=torch.float64)
    values = kernel.norm * kernel.profile(u.clone())
    assert torch.trapezoid(values, u).item() == pytest.approx(1.0, abs=2e-4)  # tophat jumps: trapezoid error ~ step
    assert kernel.profile(torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(
        {"gaussian": math.exp(-0.5), "exponential": math.exp(-1)}.get(name, 0.0))


def test_density_matches_scikit_learn_if_installed():
    sklearn = pytest.importorskip("sklearn.neighbors")
    from kenprune.ken.native import _bandwidth

    rows = torch.randn(1, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = float(_bandwidth(rows[0].numpy()))
    grid = torch.linspace(-2, 2, 9, dtype=torch.float64)
    for name, kernel in ((e.name, e.value) for e in KERNELS.entries()):
        kde = sklearn.KernelDensity(kernel=name, bandwidth=h).fit(rows[0, :, None].numpy())
        expected = torch.from_numpy(kde.score_samples(grid[:, None].numpy())).exp()
        ours = kernel.norm / h * kernel.profile((grid[:, None] - rows[0][None, :]) / h).mean(dim=1)
        assert torch.allclose(ours, expected, rtol=1e-9, atol=1e-12)
