"""Search fitness: validation perplexity of the model pruned with a candidate allocation.

A cheap proxy of the final protocol: few calibration windows, a few `valid` windows (never
`test`). `sequential` prunes with the real engine (inputs from the pruned prefix);
`oneshot` masks the weights by the dense pass's scores (the same element-wise scores the
allocation came from), several times faster. Each process prepares its model once.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import KenpruneError
from ..settings import DEFAULT_MODEL, SEARCH_CALIBRATION, SEARCH_EVALUATION, SearchSettings

PROXIES = ("sequential", "oneshot")


@dataclass(frozen=True)
class PerplexityFitness:
    model: str = DEFAULT_MODEL
    method: str = SearchSettings.method
    proxy: str = "sequential"
    calib_data: str = SEARCH_CALIBRATION.data
    calib_samples: int = SEARCH_CALIBRATION.samples
    calib_seqlen: int = SEARCH_CALIBRATION.seqlen
    data: str = SEARCH_EVALUATION.data
    windows: int = SEARCH_EVALUATION.windows
    seqlen: int = SEARCH_EVALUATION.seqlen
    seed: int = SEARCH_CALIBRATION.seed
    dtype: str = "float32"  # compute dtype of the scoring pass, the proxy's pruning and its perplexity

    def __post_init__(self) -> None:
        from ..data.corpora import parse_data_ref
        from ..precision import canonical

        if canonical(self.dtype, "the fitness dtype", allow_auto=False) != self.dtype:
            object.__setattr__(self, "dtype", canonical(self.dtype))

        if self.proxy not in PROXIES:
            raise KenpruneError(f"unknown fitness proxy {self.proxy!r}; choose one of: {', '.join(PROXIES)}")
        if parse_data_ref(self.data).split == "test":
            raise KenpruneError(f"the search fitness must not see a test split ({self.data}); use wiki:valid")
        if min(self.calib_samples, self.windows) < 1 or min(self.calib_seqlen, self.seqlen) < 2:
            raise KenpruneError("the fitness needs at least one calibration window and one evaluation window")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, block_ratios: list[float]) -> float:
        """Perplexity on the proxy windows of the model pruned at these per-block ratios."""
        return self.evaluate(block_ratios)

    def evaluate(self, block_ratios: list[float], dtype: str | None = None) -> float:
        """The fitness, computed in `dtype` (None: the fitness's own; float32 for a search's final check)."""
        prepared = _prepare(self)
        dtype = dtype or self.dtype
        ratios = dict(enumerate(block_ratios))
        if self.proxy == "sequential":
            from ..engine.elementwise import pruned_copy

            model, _ = pruned_copy(prepared.model, ratios, prepared.inputs, method=self.method, progress=False,
                                   dtype=dtype)
            try:
                return _perplexity(model, prepared.windows, dtype=dtype)
            finally:
                del model
        prepared.mask(ratios, self.method)
        try:
            return _perplexity(prepared.model, prepared.windows, dtype=dtype)
        finally:
            prepared.restore()


class _Prepared:
    """A loaded model with its calibration inputs, dense-pass scores and proxy windows."""

    def __init__(self, fitness: PerplexityFitness):
        from ..data.corpora import join_text, load_documents, tokenize_stream
        from ..models.loading import load_model
        from ..engine import capture_block_inputs
        from ..evaluate import make_windows, resolve_bos
        from ..data.windows import calibration_windows

        self.loaded = load_model(fitness.model)
        self.model = self.loaded.model.eval()
        tok = self.loaded.tokenizer
        windows = calibration_windows(tok, fitness.calib_data, nsamples=fitness.calib_samples,
                                      seqlen=fitness.calib_seqlen, seed=fitness.seed)
        self.inputs = capture_block_inputs(self.model, windows)
        self.dtype = fitness.dtype
        text_tokens = tokenize_stream(tok, join_text(load_documents(fitness.data)))
        self.windows = make_windows(text_tokens, fitness.seqlen, resolve_bos(self.loaded, "auto"), fitness.windows)
        self._scores: dict[str, torch.Tensor] | None = None
        self._dense: dict[str, torch.Tensor] = {}
        self._order: dict[str, tuple[torch.Tensor, int]] = {}

    def scores(self, method: str, progress: bool = False) -> dict[str, torch.Tensor]:
        if self._scores is None:
            from ..engine.elementwise import layer_scores

            self._scores = layer_scores(self.model, self.inputs, method=method, progress=progress, dtype=self.dtype)
        return self._scores

    def mask(self, block_ratios: dict[int, float], method: str) -> None:
        """Zero the floor(in * ratio) lowest-scoring weights of every row (Wanda's group), in place."""
        from ..models.blocks import linear_weight, set_linear_weight
        from .model import model_layers

        if not self._order:  # sort every row once; each candidate then only scatters a prefix
            modules = dict(self.model.named_modules())
            for layer in model_layers(self.model):
                scores = self.scores(method)[layer.name]
                index_dtype = torch.int16 if scores.shape[1] <= torch.iinfo(torch.int16).max else torch.int32
                self._order[layer.name] = (scores.argsort(dim=1, stable=True).to(index_dtype), layer.block)
                self._dense[layer.name] = linear_weight(modules[layer.name]).detach().clone()
        modules = dict(self.model.named_modules())
        for name, (order, block) in self._order.items():
            dense = self._dense[name]
            k = int(dense.shape[1] * block_ratios[block])
            pruned = torch.zeros(dense.shape, dtype=torch.bool).scatter_(1, order[:, :k].long(), True)
            set_linear_weight(modules[name], dense.masked_fill(pruned, 0))

    def restore(self) -> None:
        from ..models.blocks import set_linear_weight

        modules = dict(self.model.named_modules())
        for name, dense in self._dense.items():
            set_linear_weight(modules[name], dense)


@functools.lru_cache(maxsize=2)
def _prepare(fitness: PerplexityFitness) -> _Prepared:
    return _Prepared(fitness)


def prepared(fitness: PerplexityFitness) -> _Prepared:
    """This process's prepared model for a fitness (shared with the in-process evaluator)."""
    return _prepare(fitness)


@torch.inference_mode()
def _perplexity(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 4, dtype: str = "float32") -> float:
    from ..evaluate import window_nll
    from ..precision import compute_dtype

    device = next(model.parameters()).device
    with compute_dtype(model, dtype, device):
        nll = sum(float(window_nll(model, windows[i:i + batch_size].to(device)).sum())
                  for i in range(0, windows.shape[0], batch_size))
    value = math.exp(nll / (windows.shape[0] * (windows.shape[1] - 1)))
    return value if math.isfinite(value) else math.inf
