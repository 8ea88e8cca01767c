"""Evaluation under a recorded protocol: perplexity, accuracy, latency."""
from .accuracy import AccuracyResult, accuracy
from .perplexity import PerplexityResult, context_length, make_windows, perplexity, resolve_bos, window_nll
from .protocol import PerplexityProtocol

__all__ = ["AccuracyResult", "PerplexityProtocol", "PerplexityResult", "accuracy", "context_length",
           "make_windows", "perplexity", "resolve_bos", "window_nll"]
