"""Family adapters: every registered adapter fits a tiny model of its family."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from kenprune.errors import KenpruneError
from kenprune.models.blocks import find_blocks, is_linear
from kenprune.models.families import ADAPTERS, adapter_for, structured_adapter_for, structured_families
from kenprune.testing import tiny_causal_lm
from tests.structured.conftest import tiny_causal_lm as tiny_llama_like


def _tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=64)).eval()


TINY_MODELS = {
    "llama": lambda: tiny_llama_like("llama"),
    "mistral": lambda: tiny_llama_like("mistral"),
    "qwen2": lambda: tiny_llama_like("qwen2"),
    "gemma3_text": lambda: tiny_llama_like("gemma3_text"),
    "gpt2": lambda: tiny_causal_lm("gpt2"),
    "opt": lambda: tiny_causal_lm("opt"),
    "bert": _tiny_bert,
}


def test_every_registered_family_has_a_tiny_model_here():
    assert list(TINY_MODELS) == ADAPTERS.names()


@pytest.mark.parametrize("family", ADAPTERS.names())
def test_adapter_names_existing_modules_and_reads_the_head_counts(family):
    from transformers.pytorch_utils import Conv1D

    model = TINY_MODELS[family]()
    config, adapter = model.config, adapter_for(model)
    assert config.model_type == family
    targets = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in adapter.lora_modules()]
    assert {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()} >= set(adapter.lora_modules())
    assert all(is_linear(m) for m in targets)
    assert adapter.fan_in_fan_out == all(isinstance(m, Conv1D) for m in targets)
    assert adapter.heads(config) == config.num_attention_heads
    assert adapter.kv_heads(config) == getattr(config, "num_key_value_heads", config.num_attention_heads)
    blocks = find_blocks(model)[1]
    assert len(blocks) == config.num_hidden_layers
    assert all(adapter.block_heads(block, config) == config.num_attention_heads for block in blocks)


@pytest.mark.parametrize("family", structured_families())
def test_structured_adapters_find_every_projection_at_its_head_widths(family):
    model = TINY_MODELS[family]()
    config, adapter = model.config, structured_adapter_for(model)
    d = adapter.head_dim(config)
    for block in find_blocks(model)[1]:
        widths = {(part, name): adapter.linear(block, part, name).out_features
                  for part, names in ((adapter.attention, (adapter.q, adapter.k, adapter.v, adapter.o)),
                                      (adapter.mlp, (adapter.gate, adapter.up, adapter.down)))
                  for name in names if name}  # BERT's MLP has no gate
        a, m = adapter.attention, adapter.mlp
        expected = {(a, adapter.q): adapter.heads(config) * d, (a, adapter.k): adapter.kv_heads(config) * d,
                    (a, adapter.v): adapter.kv_heads(config) * d, (a, adapter.o): config.hidden_size,
                    (m, adapter.gate): getattr(config, adapter.intermediate_key),
                    (m, adapter.up): getattr(config, adapter.intermediate_key), (m, adapter.down): config.hidden_size}
        assert widths == {k: v for k, v in expected.items() if k[1]}


def test_structured_support_is_llama_like_gemma3_and_bert():
    assert structured_families() == ["llama", "mistral", "qwen2", "gemma3_text", "bert"]
    with pytest.raises(KenpruneError, match=r"^structured pruning does not support model family 'opt'; "
                                            r"supported families: llama, mistral, qwen2, gemma3_text, bert$"):
        structured_adapter_for(TINY_MODELS["opt"]())


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(KenpruneError, match=r"^unknown model family 'mlp'; choose one of: llama, mistral, qwen2, "
                                            r"gemma3_text, gpt2, opt, bert$"):
        model = nn.Sequential(nn.Linear(2, 2))
        model.config = SimpleNamespace(model_type="mlp")
        adapter_for(model)
