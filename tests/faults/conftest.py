"""Fixtures for the fault tests: the tiny Llama folder of the CLI tests, and a one-line-error check."""
from __future__ import annotations

from tests.cli.conftest import tiny_llama_folder  # noqa: F401  (a session fixture, shared)
