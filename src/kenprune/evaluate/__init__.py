"""Evaluation under a recorded protocol: perplexity, accuracy, latency."""
from .classifier import AccuracyResult, accuracy
from .language_model import PerplexityResult, context_length, make_windows, perplexity, resolve_bos, window_nll
from .protocol import PerplexityProtocol

__all__ = ["AccuracyResult", "PerplexityProtocol", "PerplexityResult", "accuracy", "context_length",
           "make_windows", "perplexity", "resolve_bos", "window_nll"]
