"""A tiny random Llama saved as a Hugging Face folder with smollm2's real tokenizer (fast CLI runs)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llama_folder(tmp_path_factory):
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
