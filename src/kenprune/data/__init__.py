"""Text: the corpus registry and its deterministic splits (corpora.py), and token windows (windows.py)."""
