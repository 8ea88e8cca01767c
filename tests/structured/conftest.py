"""Tiny random Llama-like models (llama, mistral, qwen2, gemma3_text) for mechanics tests (real-model checks
use the session `smollm2`)."""
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


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real smollm2 tokenizer alone (no weights loaded)."""
    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS

    return AutoTokenizer.from_pretrained(MODELS.get("smollm2-135m").folder())


def tiny_loaded_model(model, tokenizer, name: str):
    """A LoadedModel around a tiny random model built with the tokenizer's vocabulary size."""
    from kenprune.models.loading import LoadedModel

    return LoadedModel(model=model, tokenizer=tokenizer, name=name, source="tiny", task="causal-lm")


@pytest.fixture
def tiny_loaded(smollm2_tokenizer):
    """A tiny random Llama with the real smollm2 tokenizer (and its vocabulary size)."""
    return tiny_loaded_model(tiny_causal_lm(vocab=len(smollm2_tokenizer)), smollm2_tokenizer, "tiny-llama")


@pytest.fixture
def ids():
    return torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
