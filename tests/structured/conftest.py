"""Tiny random Llama-like models for mechanics tests (real-model checks use the session `smollm2`)."""
from __future__ import annotations

import pytest
import torch


def tiny_causal_lm(model_type: str = "llama", heads: int = 6, kv_heads: int = 2, layers: int = 4, seed: int = 0,
                   vocab: int = 128):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, vocab_size=vocab, hidden_size=48, intermediate_size=96,
                                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                  head_dim=8, max_position_embeddings=128, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def make_tiny():
    """tiny_causal_lm(model_type, heads, kv_heads, layers, seed) as a fixture."""
    return tiny_causal_lm


@pytest.fixture
def tiny_llama():
    return tiny_causal_lm()


@pytest.fixture
def tiny_loaded(smollm2):
    """A tiny random Llama with the real smollm2 tokenizer (and its vocabulary size)."""
    from kenprune.models.loading import LoadedModel

    return LoadedModel(model=tiny_causal_lm(vocab=len(smollm2.tokenizer)), tokenizer=smollm2.tokenizer, name="tiny-llama", source="tiny", task="causal-lm")


@pytest.fixture
def ids():
    return torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
