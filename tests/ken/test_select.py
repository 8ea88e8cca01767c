"""The fast KEN selection keeps exactly the indices of the row-by-row reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from .reference import ken_rows_reference

from kenprune.ken.kernels import KERNELS
from kenprune.ken.native import NORMS, _grid, _rounded_density
from kenprune.ken.select import ken_mask, ken_merge, ken_rows, ken_tensor, selection_threads


def assert_same(rows: torch.Tensor, k: int, kernel: str = "gaussian") -> torch.Tensor:
    fast = ken_rows(rows, k, kernel)
    expected = torch.from_numpy(ken_rows_reference(rows.double().numpy(), k, kernel))
    assert torch.equal(fast, expected), f"{int((fast != expected).sum())} entries differ (k={k}, {kernel})"
    assert torch.equal(fast.sum(dim=1), torch.full((rows.shape[0],), min(k, rows.shape[1])))
    return fast


@pytest.mark.parametrize("k", [1, 2, 17, 50, 98, 99, 100, 250])
def test_random_rows_all_k_edges(k):
    rows = torch.randn(24, 100, generator=torch.Generator().manual_seed(k)) * 0.05
    assert_same(rows, k)


@pytest.mark.parametrize("kernel", KERNELS.names())
def test_every_kernel(kernel):
    rows = torch.randn(12, 80, generator=torch.Generator().manual_seed(1)) * 0.03
    for k in (3, 20, 40):
        assert_same(rows, k, kernel)


def test_duplicates_and_ties_go_to_the_lowest_original_index():
    gen = torch.Generator().manual_seed(2)
    quantised = torch.randint(-4, 5, (60, 48), generator=gen).float() * 0.25  # few levels, exact midpoints
    for k in (1, 5, 12, 24, 47, 48):
        assert_same(quantised, k)
    # a row where grid points fall exactly mid-way between two values
    row = torch.tensor([[0.0, 1.0, 3.0, 2.0, 4.0, 1.0, 3.0, 0.0, 4.0]])
    assert_same(row, 3)
    # k = 1: the grid point is the minimum; of its copies the first index wins
    assert ken_rows(torch.tensor([[2.0, 0.5, 3.0, 0.5]]), 1).tolist() == [[False, True, False, False]]


def test_constant_rows_keep_their_first_indices_without_nans():
    rows = torch.full((3, 10), 0.7)
    mask = assert_same(rows, 4)
    assert mask[:, :4].all() and not mask[:, 4:].any()
    row = rows[0].double().numpy()
    assert np.array_equal(_rounded_density(row, _grid(0.7, 0.7, 4), 0.0, 0, NORMS[0]), np.zeros(4))


def test_rows_with_many_values_per_row_use_the_binned_density(smollm2):
    """Long rows and a large k exercise the binned Gaussian path and its exact fallback."""
    weight = smollm2.model.state_dict()["model.layers.3.mlp.down_proj.weight"]  # rows of 1536, quantised
    assert_same(weight[:6], 384)
    assert_same(weight[6:9], 1535)


@pytest.mark.parametrize("name,k", [("model.layers.0.self_attn.q_proj.weight", 144),
                                    ("model.layers.29.mlp.up_proj.weight", 57),
                                    ("model.norm.weight", 100), ("model.embed_tokens.weight", 20)])
def test_real_rows_smollm2(smollm2, name, k):
    tensor = smollm2.model.state_dict()[name]
    rows = tensor.reshape(1, -1) if tensor.dim() == 1 else tensor[:8]
    assert_same(rows, k)


@pytest.mark.parametrize("name,k", [("encoder.layer.0.attention.self.query.weight", 96),
                                    ("encoder.layer.5.output.dense.weight", 384),
                                    ("embeddings.LayerNorm.weight", 7)])
def test_real_rows_minilm(minilm, name, k):
    tensor = minilm.model.state_dict()[name]
    rows = tensor.reshape(1, -1) if tensor.dim() == 1 else tensor[:8]
    assert_same(rows, k)


def test_tensor_level_inputs_untouched_and_merge():
    gen = torch.Generator().manual_seed(3)
    pre = torch.randn(6, 30, generator=gen)
    ft = pre + 0.1 * torch.randn(6, 30, generator=gen)
    pre_copy, ft_copy = pre.clone(), ft.clone()
    optimized, mask = ken_tensor(pre, ft, 10)
    assert torch.equal(pre, pre_copy) and torch.equal(ft, ft_copy)
    assert torch.equal(optimized[mask], ft[mask]) and torch.equal(optimized[~mask], pre[~mask])
    assert (mask.sum(dim=1) == 10).all()
    vector = ft[0]
    assert ken_mask(vector, 4).sum() == 4  # a 1-D tensor is one row
    assert ken_merge(pre[0], vector, ken_mask(vector, 40)).equal(vector)  # k > n keeps everything


def test_grid_is_numpy_linspace_bit_for_bit():
    for lo, hi, k in ((-0.3, 0.7, 7), (1.0, 1.0, 7), (-0.0123, 0.0456, 144), (2.5, 2.5, 1)):
        assert np.array_equal(_grid(lo, hi, k), np.linspace(lo, hi, k))


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the reference's std of a row holding 1e300
def test_rows_with_outliers_and_crowded_buckets():
    """A far outlier crowds every other value into one sort bucket and makes the binned grid huge;
    distinct values far from a grid point can have equal float64 distances (a tie, lowest index wins)."""
    gen = torch.Generator().manual_seed(6)
    rows = torch.randn(8, 200, generator=gen, dtype=torch.float64) * 0.02
    rows[:, 7] = 50.0
    rows[1, 3] = -1e6
    rows[2, 5] = 1e300  # infinite bandwidth; every distance from a far grid point rounds alike
    rows[3, 20:40] = torch.arange(20, 0, -1, dtype=torch.float64) * 1e-20  # distinct, closer than an ulp of 0.05
    for k in (16, 50, 150):
        assert_same(rows, k)


def test_threads_do_not_change_the_result():
    rows = torch.randn(300, 64, generator=torch.Generator().manual_seed(7)) * 0.05
    with selection_threads(1):
        one = ken_rows(rows, 16)
    with selection_threads(2):
        two = ken_rows(rows, 16)
    assert torch.equal(one, two)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_matches_the_official_scikit_learn_code_path(kernel):
    """On rows without duplicates, the official code (sklearn KDE, value membership) keeps the same entries."""
    pytest.importorskip("sklearn")
    from .reference import ken_row_official

    rows = torch.randn(6, 300, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.04
    fast = ken_rows(rows, 75, kernel)
    for row, mask in zip(rows, fast):
        assert np.array_equal(ken_row_official(row.numpy(), 75, kernel), mask.numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_same_selection_and_stay_untouched():
    rows = torch.randn(64, 200, generator=torch.Generator().manual_seed(8)) * 0.03
    on_gpu = rows.cuda()
    before = on_gpu.clone()
    mask = ken_rows(on_gpu, 50)
    assert torch.equal(mask, ken_rows(rows, 50)) and torch.equal(on_gpu, before)
    pre = torch.zeros_like(on_gpu)
    merged = ken_merge(pre, on_gpu, mask)
    assert merged.device.type == "cuda" and torch.equal(merged[mask.cuda()], on_gpu[mask.cuda()])
