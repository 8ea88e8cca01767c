"""The row selections beside KEN: DARE's drop rate and rescale, KEN on deltas, the baselines, and
`kenprune ken --selection` end to end on the real minilm-l6 pair (every entry's common behaviours
are in tests/contract/test_registries.py)."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.ken.select import ken_rows
from kenprune.ken.selections import ROW_SELECTIONS, kept_values, resolve
from kenprune.ken.selections.magnitude import topk_rows
from kenprune.ken.selections.random import random_rows


def test_dare_rescales_kept_deltas_by_one_over_keep_rate_and_drops_the_rest():
    pre = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, -1.0, 2.0, 0.5]])
    ft = torch.tensor([[1.5, 0.0, 3.0, 1.25], [1.0, -1.0, 0.0, 0.5]])
    dare = ROW_SELECTIONS.get("dare")
    mask = dare.mask(pre, ft, 1, generator=torch.Generator().manual_seed(3))  # k = 1 of n = 4: p = 0.75
    assert mask.sum(dim=1).tolist() == [1, 1]
    values = kept_values(pre, ft, mask, 1, 4, dare.rescale)
    expected = (pre + (ft - pre) * 4.0)[mask]  # 1 / (1 - p) = 4
    assert torch.equal(values, expected)
    assert kept_values(pre, ft, mask, 1, 4, rescale=False).tolist() == ft[mask].tolist()  # random: no rescale


def test_dare_drop_rate_is_one_minus_k_over_n_per_row_and_per_position():
    rows = torch.zeros(4000, 8)
    mask = ROW_SELECTIONS.get("dare").mask(rows, rows + 1, 2, generator=torch.Generator().manual_seed(0))
    assert (mask.sum(dim=1) == 2).all()  # the kept count is exact: p = 1 - 2/8 = 0.75 in every row
    per_position = mask.float().mean(dim=0)  # each entry is kept with probability 1 - p = 0.25
    assert torch.allclose(per_position, torch.full((8,), 0.25), atol=0.03)


def test_ken_on_deltas_equals_ken_applied_to_the_delta_rows():
    gen = torch.Generator().manual_seed(1)
    pre = torch.randn(6, 50, generator=gen)
    ft = pre + 0.1 * torch.randn(6, 50, generator=gen)
    chooser = resolve("ken", select_on="delta")
    assert chooser.name == "ken-delta"
    for kernel in ("gaussian", "epanechnikov"):
        assert torch.equal(chooser.mask(pre, ft, 13, kernel=kernel), ken_rows(ft - pre, 13, kernel))
    assert torch.equal(ROW_SELECTIONS.get("ken").mask(pre, ft, 13), ken_rows(ft, 13))


def test_magnitude_selections_keep_the_largest_scores():
    pre = torch.zeros(2, 4)
    ft = torch.tensor([[0.1, -0.9, 0.5, 0.2], [3.0, 1.0, -2.0, 0.0]])
    assert topk_rows(ft.abs(), 2).tolist() == [[False, True, True, False], [True, False, True, False]]
    base = torch.ones(2, 4)
    assert ROW_SELECTIONS.get("delta").mask(base, ft, 1).tolist() == [[False, True, False, False],
                                                                       [False, False, True, False]]
    assert ROW_SELECTIONS.get("finetuned").mask(base, ft, 1).tolist() == [[False, True, False, False],
                                                                           [True, False, False, False]]
    mask = random_rows(torch.zeros(5, 30), 7, generator=torch.Generator().manual_seed(0))
    assert (mask.sum(dim=1) == 7).all()


def test_select_on_delta_is_for_ken_only():
    with pytest.raises(KenpruneError, match="--select-on delta applies to KEN"):
        resolve("random", select_on="delta")
    with pytest.raises(KenpruneError, match="unknown selection 'nope'"):
        resolve("nope")


@pytest.mark.parametrize("selection", ["ken-delta", "dare"])
def test_ken_job_with_a_selection(minilm_pair, tmp_path, selection):
    """The job records the selection; DARE's optimized model is pre + n/k x delta where kept, pre elsewhere."""
    from kenprune.jobs.ken import ken
    from kenprune.ken.apply import unique_parameters
    from kenprune.ken.subnetwork import read_subnetwork
    from kenprune.models.loading import load_model

    folder, _ = minilm_pair
    record = ken(str(folder), k="25%", out=tmp_path / selection, selection=selection, seed=5, progress=False)
    assert record.details["method"] == selection
    assert record.details["totals"]["kept_fraction_of_selected"] == pytest.approx(0.25, abs=1e-3)
    sub = read_subnetwork(tmp_path / selection / "subnetwork.safetensors")
    assert sub.meta["method"] == selection
    name = "bert.encoder.layer.0.attention.self.query.weight"
    pre = unique_parameters(load_model(str(folder / "initial")).model)[0][name].detach()
    ft = unique_parameters(load_model(str(folder)).model)[0][name].detach()
    mask = sub.masks[name]
    assert (mask.sum(dim=1) == 96).all()
    scale = 384 / 96 if selection == "dare" else 1.0
    assert torch.allclose(sub.values[name], (pre + (ft - pre) * scale)[mask], atol=1e-6)
