"""Physical removal equals masking, and both save paths reload to the same logits."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from kenprune.models.blocks import find_blocks
from kenprune.models.loading import load_model
from kenprune.structured.groups import block_groups
from kenprune.structured.importance import unit_scores
from kenprune.structured.io import save_structured
from kenprune.structured.plan import PrunePlan, plan_keep
from kenprune.structured.prune import prune_structured
from kenprune.structured.removal import WIDTHS_KEY, apply_widths, block_widths, count_parameters, remove_units
from tests.structured.conftest import tiny_loaded_model


def _masked(model, groups, keep):
    """The dense model with removed units silenced: their output-projection input columns zeroed."""
    masked = copy.deepcopy(model)
    names = dict(model.named_modules())
    targets = {id(m): n for n, m in names.items()}
    masked_modules = dict(masked.named_modules())
    with torch.no_grad():
        for group, kept in zip(groups, keep):
            last = group.members[-1]  # o_proj / down_proj: channels are input columns
            dropped = torch.ones(group.units, dtype=torch.bool)
            dropped[kept] = False
            masked_modules[targets[id(last.linear)]].weight[:, last.unit_channels[dropped].reshape(-1)] = 0
    return masked


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
@pytest.mark.parametrize("unit", ["query", "kv"])
def test_removal_gives_the_logits_of_the_masked_dense_model(make_tiny, ids, unit, family):
    model = make_tiny(family)
    groups = block_groups(model, unit)
    keep = plan_keep(groups, unit_scores(groups, "l2"), PrunePlan(0.4, keep_first=1), n_blocks=4)
    masked = _masked(model, groups, keep)
    params_before = count_parameters(model)
    remove_units(groups, keep)
    apply_widths(model, block_widths(model))
    torch.testing.assert_close(model(ids).logits, masked(ids).logits, rtol=1e-5, atol=1e-5)
    assert count_parameters(model) < params_before


def test_gemma3_prunes_heads_but_not_its_head_norms_and_reloads(make_tiny, smollm2_tokenizer, ids, tmp_path):
    import kenprune

    loaded = tiny_loaded_model(make_tiny("gemma3_text", vocab=len(smollm2_tokenizer)), smollm2_tokenizer, "gemma3")
    result = prune_structured(loaded, PrunePlan(0.5, keep_first=1, round_to=1), importance="l2", progress=False)
    assert [(w.heads, w.kv_heads, w.intermediate) for w in result.widths_after] == [(6, 2, 96)] + [(2, 2, 48)] * 3
    attention = find_blocks(loaded.model)[1][1].self_attn
    assert attention.q_norm.weight.shape == attention.k_norm.weight.shape == (8,)  # over head_dim, untouched
    save_structured(loaded, tmp_path / "g", {"method": "structured"})
    reloaded = kenprune.load(str(tmp_path / "g"))
    torch.testing.assert_close(reloaded.model(ids).logits, loaded.model(ids).logits, rtol=0, atol=0)


def test_uniform_widths_reload_with_plain_from_pretrained(tiny_loaded, ids, tmp_path):
    from transformers import AutoModelForCausalLM

    prune_structured(tiny_loaded, PrunePlan(0.3), importance="l1", progress=False)
    save_structured(tiny_loaded, tmp_path / "m", {"method": "structured"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (4, 2, 64)
    assert WIDTHS_KEY not in config and "kenprune_loader" not in config
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    expected = tiny_loaded.model(ids).logits
    torch.testing.assert_close(reloaded(ids).logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(load_model(str(tmp_path / "m")).model(ids).logits, expected, rtol=0, atol=0)


def test_per_block_widths_reload_with_kenprune_load(tiny_loaded, ids, tmp_path):
    import kenprune

    prune_structured(tiny_loaded, PrunePlan(0.5, keep_first=1, keep_last=1), importance="l2", progress=False)
    save_structured(tiny_loaded, tmp_path / "m", {"method": "structured"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert [w["intermediate"] for w in config[WIDTHS_KEY]] == [96, 48, 48, 96]
    assert config["intermediate_size"] == 96
    reloaded = kenprune.load(str(tmp_path / "m"))
    torch.testing.assert_close(reloaded.model(ids).logits, tiny_loaded.model(ids).logits, rtol=0, atol=0)
    assert sum(p.numel() for p in reloaded.model.parameters()) == sum(p.numel() for p in tiny_loaded.model.parameters())


def test_smollm2_pruned_20_percent_reloads_with_equal_logits(smollm2, tmp_path):
    from transformers import AutoModelForCausalLM

    loaded = copy.copy(smollm2)
    loaded.model = copy.deepcopy(smollm2.model)
    result = prune_structured(loaded, PrunePlan(0.2), importance="taylor", calib="lee:calib",
                              nsamples=2, seqlen=32, progress=False)
    assert {(w.heads, w.kv_heads, w.intermediate) for w in result.widths_after} == {(6, 3, 1232)}
    assert 0.15 < 1 - result.block_parameters_after / result.block_parameters_before < 0.25
    save_structured(loaded, tmp_path / "s", {"method": "structured"})
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    ids = smollm2.tokenizer("Structured pruning removes whole heads.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(ids).logits, loaded.model(ids).logits, rtol=0, atol=0)
