"""Evaluation tests reuse the structured tests' tiny Llama-like models."""
from tests.structured.conftest import make_tiny, smollm2_tokenizer, tiny_llama, tiny_loaded  # noqa: F401
