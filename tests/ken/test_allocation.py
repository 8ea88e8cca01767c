"""Per-tensor k from an allocation: the pure allocation on hand-made tensors, then kenprune ken --allocation."""
from __future__ import annotations

import pytest
import torch

from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.ken.allocation import allocate_k, block_of
from kenprune.ken.apply import KSpec, select_masks


def _pair():
    gen = torch.Generator().manual_seed(0)
    pre = {"layer.0.a": torch.randn(8, 32, generator=gen), "layer.1.b": torch.randn(16, 32, generator=gen),
           "embed": torch.randn(4, 64, generator=gen)}
    scale = {"layer.0.a": 1.0, "layer.1.b": 0.01, "embed": 0.1}  # layer.0.a changed most, layer.1.b least
    ft = {n: t + scale[n] * torch.randn(t.shape, generator=gen) for n, t in pre.items()}
    return pre, ft


def test_block_of_names_the_first_numeric_part():
    assert block_of("model.layers.11.mlp.up_proj.weight") == 11
    assert block_of("bert.encoder.layer.0.attention.self.query.weight") == 0
    assert block_of("model.embed_tokens.weight") == -1


def test_global_keeps_more_where_the_deltas_are_larger_and_k_overall():
    pre, ft = _pair()
    names = list(ft)
    per_tensor, allocation = allocate_k(pre, ft, names, "25%", "global")
    kept = {n: per_tensor[n].value for n in names}
    assert kept["layer.0.a"] > kept["embed"] > kept["layer.1.b"]
    sizes = {n: ft[n].numel() for n in names}
    assert sum(kept[n] * sizes[n] for n in names) / sum(sizes.values()) == pytest.approx(0.25, abs=1e-6)
    assert allocation.spec == "global" and set(allocation.ratios) == set(names)
    # the masks keep round(k_tensor * n) per row, at least one
    masks = select_masks(ft, names, per_tensor, progress=False)
    for n in names:
        expected = max(1, min(ft[n].shape[1], int(kept[n] * ft[n].shape[1] + 0.5)))
        assert masks.k_row[n] == expected and (masks.masks[n].sum(dim=1) == expected).all()


def test_uniform_allocation_equals_the_plain_k():
    pre, ft = _pair()
    names = list(ft)
    per_tensor, _ = allocate_k(pre, ft, names, "0.25", "uniform")
    assert select_masks(ft, names, per_tensor, progress=False).k_row == \
        select_masks(ft, names, KSpec.parse("0.25"), progress=False).k_row


def test_a_count_or_full_k_is_refused():
    pre, ft = _pair()
    with pytest.raises(KenpruneError, match="fraction or percentage"):
        allocate_k(pre, ft, list(ft), "8", "global")
    with pytest.raises(KenpruneError, match="nothing to allocate"):
        allocate_k(pre, ft, list(ft), "100%", "global")


def test_ken_with_allocation_on_a_real_pair(minilm_pair, tmp_path, capsys):
    from kenprune.jobs.ken import apply as ken_apply
    from kenprune.jobs.ken import ken
    from kenprune.settings import Evaluation

    folder, _ = minilm_pair
    record = ken(str(folder), k="25%", allocation="global", out=tmp_path / "g", evaluation=Evaluation(data=None),
                 progress=False)
    d = record.details
    assert d["allocation"]["spec"] == "global"
    assert d["totals"]["kept_fraction_of_selected"] == pytest.approx(0.25, abs=0.01)
    fractions = [t["kept_fraction"] for t in d["tensors"].values() if t["numel"] > 1000]
    assert max(fractions) - min(fractions) > 0.1  # not the same k everywhere
    rebuilt = ken_apply(str(folder / "initial"), tmp_path / "g" / "subnetwork.safetensors", tmp_path / "m",
                        progress=False)
    assert rebuilt.details["optimized_sha256"] == d["optimized_sha256"]
    assert main(["ken", "--finetuned", str(folder), "--k", "12", "--allocation", "global", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "kept fraction" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["ken", "--finetuned", str(folder), "--allocation", "nope", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown allocation" in capsys.readouterr().err
