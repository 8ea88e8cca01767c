"""Registries of the real, embedded models and corpora, and their caches."""
