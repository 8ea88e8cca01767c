"""Perplexity and accuracy under a recorded protocol."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import provenance
from ..precision import compute_dtype
from ..data.corpora import (DataRef, join_text, load_documents, parse_data_ref, text_sha256,
                             tokenize_stream)
from ..models.loading import CAUSAL_LM, SEQUENCE_CLASSIFICATION, LoadedModel
from ..errors import KenpruneError
from .protocol import PerplexityProtocol


def resolve_bos(loaded: LoadedModel, policy: str) -> int | None:
    """The BOS id to prepend to every window, or None."""
    tokenizer = loaded.tokenizer
    if policy == "auto":
        policy = loaded.bos
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if policy == "none":
        return None
    if policy == "prepend":
        if bos_id is None:
            raise KenpruneError(f"{loaded.name}'s tokenizer has no BOS token; use --bos none")
        return bos_id
    ids = tokenizer("a")["input_ids"]
    return bos_id if bos_id is not None and ids and ids[0] == bos_id else None


def context_length(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def make_windows(tokens: torch.Tensor, seqlen: int, bos_id: int | None,
                 max_windows: int | None) -> torch.Tensor:
    """Non-overlapping windows [n, seqlen]; with BOS each holds BOS + (seqlen - 1) text tokens."""
    body = seqlen - 1 if bos_id is not None else seqlen
    n = tokens.numel() // body
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise KenpruneError(f"the text has {tokens.numel()} tokens, fewer than one window of {seqlen}; "
                            f"lower --seqlen or use more text")
    windows = tokens[: n * body].view(n, body)
    if bos_id is not None:
        windows = torch.cat([torch.full((n, 1), bos_id, dtype=windows.dtype), windows], dim=1)
    return windows


@dataclass
class PerplexityResult:
    perplexity: float
    nll_sum: float
    predicted_tokens: int
    windows: int
    protocol: PerplexityProtocol
    bos_token_id: int | None
    text_sha256: str
    split_tokens: int
    seconds: float
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": "perplexity",
            "perplexity": self.perplexity,
            "nll_sum": self.nll_sum,
            "protocol": {**self.protocol.to_dict(), "windows": self.windows,
                         "predicted_tokens": self.predicted_tokens, "bos_token_id": self.bos_token_id,
                         "split_tokens": self.split_tokens, "text_sha256": self.text_sha256},
            "model": self.model,
            "seconds": self.seconds,
            "tokens_per_second": self.windows * self.protocol.seqlen / max(self.seconds, 1e-9),
            **provenance.record(),
        }


CE_ROWS = 128  # positions per head + cross-entropy call: logits are [CE_ROWS, vocab] at a time, never [seqlen, vocab]


def _chunked_nll(head: torch.nn.Module | None, hidden: torch.Tensor | None, windows: torch.Tensor,
                 logits: torch.Tensor | None = None) -> torch.Tensor:
    """Summed next-token NLL per window, CE_ROWS positions at a time, from final hidden states
    through `head` (or from full `logits` when given)."""
    n, seqlen = windows.shape
    sums = []
    for i in range(n):
        losses = []
        for a in range(0, seqlen - 1, CE_ROWS):
            b = min(a + CE_ROWS, seqlen - 1)
            chunk = logits[i, a:b] if logits is not None else head(hidden[i, a:b])  # a contiguous slice: no copy
            losses.append(F.cross_entropy(chunk.float(), windows[i, a + 1:b + 1], reduction="none"))
        sums.append(torch.cat(losses).double().sum())
    return torch.stack(sums)


def head_inputs(model: torch.nn.Module, input_ids: torch.Tensor) -> tuple[torch.nn.Module | None, torch.Tensor]:
    """(the output head, the final hidden states entering it [b, len, hidden]) of one forward, or (None, the
    full logits [b, len, vocab]) when the head's output is not the logits as they are.

    The [len, vocab] logits are never materialised when the model's logits are its output head applied to
    the final hidden states: a pre-hook keeps those hidden states and lets the head compute the last
    position only, which is checked against our own head call (a model that post-processes its logits,
    e.g. soft-capping, fails the check and gets the full logits)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None, model(input_ids=input_ids, use_cache=False).logits
    kept: dict[str, torch.Tensor] = {}

    def last_position_only(_module: torch.nn.Module, args: tuple) -> tuple:
        kept["hidden"] = args[0]
        return (args[0][:, -1:], *args[1:])

    handle = head.register_forward_pre_hook(last_position_only)
    try:
        last = model(input_ids=input_ids, use_cache=False).logits
    finally:
        handle.remove()
    hidden = kept.get("hidden")
    if (hidden is not None and hidden.shape[:2] == input_ids.shape and last.shape[:2] == (input_ids.shape[0], 1)
            and torch.allclose(head(hidden[:, -1:]).float(), last.float(), rtol=1e-5, atol=1e-5)):
        return head, hidden
    del hidden, kept, last
    return None, model(input_ids=input_ids, use_cache=False).logits


def window_nll(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL of each window (float64), shape [n]; CE_ROWS positions' logits at a time
    (`head_inputs`)."""
    head, states = head_inputs(model, windows)
    if head is None:
        return _chunked_nll(None, None, windows, states)
    return _chunked_nll(head, states, windows)


def check_finite_nll(data: str, bad: list[int], total: int) -> None:
    """A one-line KenpruneError when some windows' loss is not finite (never a silent NaN perplexity)."""
    if not bad:
        return
    shown = ", ".join(map(str, bad[:8])) + (f", ... ({len(bad)} in all)" if len(bad) > 8 else "")
    raise KenpruneError(f"perplexity on {data} is not finite: window{'s' if len(bad) > 1 else ''} {shown} of "
                        f"{total} gave non-finite loss (the weights may be corrupt)")


@torch.inference_mode()
def perplexity(loaded: LoadedModel, protocol: PerplexityProtocol | None = None, *,
               batch_size: int = 1, progress: bool = True, identify: bool = True) -> PerplexityResult:
    """Perplexity of a causal LM on a split under `protocol` (default: wiki:test, 512 tokens)."""
    protocol = protocol or PerplexityProtocol()
    if loaded.task != CAUSAL_LM:
        raise KenpruneError(f"{loaded.name} is a {loaded.task} model; perplexity needs a causal LM")
    limit = context_length(loaded.model)
    if limit is not None and protocol.seqlen > limit:
        raise KenpruneError(f"--seqlen {protocol.seqlen} exceeds {loaded.name}'s context of {limit} tokens")
    text = join_text(load_documents(parse_data_ref(protocol.data)))
    tokens = tokenize_stream(loaded.tokenizer, text)
    bos_id = resolve_bos(loaded, protocol.bos)
    windows = make_windows(tokens, protocol.seqlen, bos_id, protocol.max_windows)
    start = time.perf_counter()
    nll_sum = 0.0
    bad: list[int] = []  # windows whose loss is NaN or infinite
    streamed = getattr(loaded, "streamed_nll", None)  # a model read block by block (kenprune.models.lazy)
    if streamed is not None:  # every window through block 0, then block 1, ...: the same batches, the same sums
        every = streamed(windows, batch_size=batch_size, dtype=protocol.dtype, progress=progress)
        bad = [int(j) for j in torch.nonzero(~torch.isfinite(every)).flatten()]
        for i in range(0, windows.size(0), batch_size):
            nll_sum += float(every[i:i + batch_size].sum())
    else:
        device = next(loaded.model.parameters()).device
        bar = tqdm(total=windows.size(0), desc=f"perplexity {protocol.data}", unit="win",
                   disable=not progress, leave=False)
        with compute_dtype(loaded.model, protocol.dtype, device):  # float32: the model as it is
            for i in range(0, windows.size(0), batch_size):
                batch = windows[i:i + batch_size].to(device)
                nll = window_nll(loaded.model, batch).cpu()
                bad.extend(i + int(j) for j in torch.nonzero(~torch.isfinite(nll)).flatten())
                nll_sum += float(nll.sum())
                bar.update(batch.size(0))
        bar.close()
    check_finite_nll(protocol.data, bad, windows.size(0))
    seconds = time.perf_counter() - start
    predicted = windows.size(0) * (protocol.seqlen - 1)
    return PerplexityResult(
        perplexity=math.exp(nll_sum / predicted) if nll_sum / predicted < 709 else math.inf,  # exp would overflow
        nll_sum=nll_sum, predicted_tokens=predicted,
        windows=windows.size(0), protocol=protocol, bos_token_id=bos_id, text_sha256=text_sha256(text),
        split_tokens=int(tokens.numel()), seconds=seconds,
        model=loaded.identity() if identify else {"name": loaded.name, "source": loaded.source},
    )
