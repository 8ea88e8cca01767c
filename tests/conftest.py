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
