"""Shared fixtures: real models are loaded once per test session and shared across tests."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2():
    """The default LLM (real weights), loaded once. Tests must not modify it in place."""
    from kenprune.models.loading import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def minilm():
    from kenprune.models.loading import load_model

    return load_model("minilm-l6")


@pytest.fixture(scope="session")
def tiny_llama_folder(tmp_path_factory):
    """A tiny random Llama saved as a Hugging Face folder with smollm2's real tokenizer (fast CLI runs)."""
    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS
    from kenprune.testing import tiny_causal_lm

    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("smollm2-135m").folder())
    model = tiny_causal_lm("llama", layers=2, vocab=len(tokenizer))
    model.config.architectures = ["LlamaForCausalLM"]
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
