"""Models: the embedded-model registry and loading (loading.py), where blocks and Linears are (blocks.py),
and the per-family adapters (families.py)."""
