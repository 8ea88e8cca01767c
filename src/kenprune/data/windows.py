"""Token windows, made once: calibration windows (random, seeded) for every method that calibrates."""
from __future__ import annotations

from typing import Any

import torch

from .corpora import join_text, load_documents, sample_windows, tokenize_stream


def calibration_windows(tokenizer: Any, data: str = "wiki:calib", *, nsamples: int = 128, seqlen: int = 512,
                        seed: int = 0) -> torch.Tensor:
    """`nsamples` random windows of `seqlen` tokens from a split (the Wanda/SparseGPT protocol): [n, seqlen]."""
    tokens = tokenize_stream(tokenizer, join_text(load_documents(data)))
    return sample_windows(tokens, nsamples, seqlen, seed)


def windows_for(tokenizer: Any, calibration: Any) -> torch.Tensor:
    """Calibration windows for a `settings.Calibration`."""
    return calibration_windows(tokenizer, calibration.data, nsamples=calibration.samples,
                               seqlen=calibration.seqlen, seed=calibration.seed)
