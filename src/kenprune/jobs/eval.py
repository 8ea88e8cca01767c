"""Python functions that mirror the CLI commands one to one (same names, same defaults)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import write_json


def evaluate_model(model: str = "smollm2-135m", data: str = "wiki:test", *, seqlen: int = 512,
                   max_windows: int | None = None, bos: str = "auto", batch_size: int = 1,
                   out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """`kenprune eval`: perplexity for causal LMs, accuracy for sequence classifiers; JSON to `out`."""
    from ..models.loading import CAUSAL_LM, load_model
    from ..evaluate import accuracy, perplexity
    from ..evaluate.protocol import PerplexityProtocol

    from ..data.corpora import parse_data_ref

    parse_data_ref(data)  # fail on a bad reference before the slow model load
    loaded = load_model(model)
    if loaded.task == CAUSAL_LM:
        protocol = PerplexityProtocol(data=data, seqlen=seqlen, max_windows=max_windows, bos=bos)
        result = perplexity(loaded, protocol, batch_size=batch_size, progress=progress).to_dict()
    else:
        result = accuracy(loaded, data, batch_size=max(batch_size, 16), progress=progress).to_dict()
    if out is not None:
        write_json(out, result)
    return result
