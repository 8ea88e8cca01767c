"""Coupled groups: which slices belong together, per family adapter."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.models.blocks import find_blocks
from kenprune.structured.groups import block_groups


def test_query_mode_groups_pair_query_rows_with_output_columns(tiny_llama):
    groups = block_groups(tiny_llama)
    assert len(groups) == 2 * len(find_blocks(tiny_llama)[1])
    attention, mlp = groups[0], groups[1]
    assert (attention.unit, attention.units, attention.per_kv) == ("query-head", 6, 3)
    assert [(m.name, m.axis) for m in attention.members] == [("q_proj", 0), ("o_proj", 1)]
    assert attention.members[0].unit_channels[1].tolist() == list(range(8, 16))  # head 1 = rows 8..15
    assert (mlp.unit, mlp.units) == ("channel", 96)
    assert [(m.name, m.axis) for m in mlp.members] == [("gate_proj", 0), ("up_proj", 0), ("down_proj", 1)]


def test_kv_mode_takes_a_key_value_head_with_all_its_query_heads(tiny_llama):
    attention = block_groups(tiny_llama, "kv")[0]
    assert (attention.unit, attention.units) == ("kv-group", 2)
    q, k, v, o = attention.members
    assert q.unit_channels[1].tolist() == list(range(24, 48))  # query heads 3, 4, 5
    assert k.unit_channels[1].tolist() == v.unit_channels[1].tolist() == list(range(8, 16))
    assert o.axis == 1 and torch.equal(o.unit_channels, q.unit_channels)


def test_multi_head_attention_uses_kv_groups_and_refuses_query_mode(make_tiny):
    mha = make_tiny(heads=4, kv_heads=4)
    assert block_groups(mha)[0].unit == "kv-group"
    with pytest.raises(KenpruneError, match="break the key/value grouping"):
        block_groups(mha, "query")


def test_unsupported_family_names_the_supported_ones():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16))
    with pytest.raises(KenpruneError, match=r"^structured pruning does not support model family 'gpt2'; "
                                            r"supported families: llama, mistral, qwen2, gemma3_text, bert$"):
        block_groups(gpt2)


def test_structured_pruning_of_gpt2_fails_in_one_line_before_any_change(smollm2_tokenizer):
    from kenprune.structured.plan import PrunePlan
    from kenprune.structured.prune import prune_structured
    from kenprune.testing import tiny_causal_lm
    from tests.structured.conftest import tiny_loaded_model

    loaded = tiny_loaded_model(tiny_causal_lm("gpt2", layers=2), smollm2_tokenizer, "gpt2")
    before = {n: p.clone() for n, p in loaded.model.state_dict().items()}
    with pytest.raises(KenpruneError, match=r"^structured pruning does not support model family 'gpt2'; "
                                            r"supported families: llama, mistral, qwen2, gemma3_text, bert$"):
        prune_structured(loaded, PrunePlan(0.5), importance="l1", progress=False)
    assert all(torch.equal(p, before[n]) for n, p in loaded.model.state_dict().items())
