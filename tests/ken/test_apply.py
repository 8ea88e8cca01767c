"""Model-level KEN: k parsing, tensor selection, compatibility checks, tied weights, batching."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.ken.apply import KSpec, check_compatible, select_masks, select_tensors, unique_parameters
from kenprune.ken.select import ken_mask


@pytest.mark.parametrize("text,value,fraction", [("0.25", 0.25, True), ("25%", 0.25, True), ("300", 300, False),
                                                 (7, 7, False), (1.0, 1.0, True)])
def test_k_parsing(text, value, fraction):
    spec = KSpec.parse(text)
    assert (spec.value, spec.fraction) == (value, fraction)


@pytest.mark.parametrize("bad,match", [("0", "positive"), (-3, "positive"), ("1.5", r"\(0, 1\]"),
                                       ("abc", "count per row"), ("nan", "positive")])
def test_bad_k(bad, match):
    with pytest.raises(KenpruneError, match=match):
        KSpec.parse(bad)


def test_k_per_row():
    assert KSpec.parse(0.25).per_row(576) == 144
    assert KSpec.parse(0.001).per_row(10) == 1
    assert KSpec.parse(300).per_row(100) == 100


def test_selection_patterns():
    names = ["embed.weight", "layers.0.attn.q.weight", "layers.11.mlp.up.weight", "norm.weight"]
    assert select_tensors(names) == names
    assert select_tensors(names, "blocks") == names[1:3]
    assert select_tensors(names, include=["*.mlp.*"]) == [names[2]]
    assert select_tensors(names, exclude=["embed*", "norm*"]) == names[1:3]
    with pytest.raises(KenpruneError, match="blocks"):
        select_tensors(names, "attention")


def test_mismatch_names_first_tensor():
    a = {"x": torch.zeros(2, 3), "y": torch.zeros(4)}
    with pytest.raises(KenpruneError, match=r"tensor y has shape \(4,\)"):
        check_compatible(a, {"x": torch.zeros(2, 3), "y": torch.zeros(5)})
    with pytest.raises(KenpruneError, match="tensor z"):
        check_compatible(a, {**a, "z": torch.zeros(1)})


def test_tied_weights_are_processed_once(smollm2):
    params, aliases = unique_parameters(smollm2.model)
    assert "lm_head.weight" not in params and aliases["model.embed_tokens.weight"] == ["lm_head.weight"]


def test_batched_selection_equals_per_tensor():
    gen = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(7, 40, generator=gen), "b": torch.randn(5, 40, generator=gen),
               "c": torch.randn(40, generator=gen), "d": torch.randn(3, 9, generator=gen)}
    sel = select_masks(tensors, list(tensors), 12, max_elements=200, progress=False)  # chunks cut across tensors
    for name, tensor in tensors.items():
        assert torch.equal(sel.masks[name], ken_mask(tensor, 12)), name
    assert sel.clipped == ["d"] and sel.masks["d"].all()
    assert sel.kept() == 7 * 12 + 5 * 12 + 12 + 27


def test_non_finite_values_are_refused():
    with pytest.raises(KenpruneError, match="tensor w .*NaN"):
        select_masks({"w": torch.tensor([[0.1, float("nan")]])}, ["w"], 1, progress=False)
