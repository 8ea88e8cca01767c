"""Zero-shot tasks on a model bigger than memory: an lm-eval LM that scores every request block by block.

    lm = StreamedLM(loaded, tokenizer, batch_size=8)   # loaded: LazyModel.loaded() (models/lazy.py)
    lm_eval.simple_evaluate(model=lm, tasks=[...])      # what run_tasks does for a streamed model

`StreamedLM` is lm-eval's HFLM with one method replaced: `_loglikelihood_tokens`. Requests are
tokenized by HFLM's own code (`TemplateLM.loglikelihood` -> `_encode_pair`: same context/continuation
split, same BOS and left truncation to max_length), ordered and batched by HFLM's Collator (longest
first; one forward per shared context + continuation[:-1] group), and right-padded as HFLM pads them.
Then, instead of one model call per batch, every batch passes block 0, then every batch passes block 1,
... (`engine.streaming.streamed_pass`: one block's weights in memory at a time, the activations spilled
beyond the budget), and the norm and head run last, on the continuation positions only. The answers are
HFLM's: (sum of the continuation tokens' log-probabilities, whether each is the argmax), in request order.

No attention mask is passed, as HFLM passes none to a causal model (`self.model(inps).logits`): with
right padding, a causal model's outputs at the scored positions (all before the padding) do not depend on
the padding tokens after them.

`loglikelihood_rolling` and `generate_until` are not streamed: a task that needs them is refused in one line.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import KenpruneError

# lm-eval is the optional `tasks` extra: run_tasks imports this module only after zero_shot.require_lm_eval()
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from lm_eval.models.utils_hf import pad_and_concat


def _refuse(kind: str, requests: list[Any]) -> None:
    names = sorted({str(getattr(r, "task_name", None) or "?") for r in requests})
    raise KenpruneError(f"task {', '.join(names)} needs lm-eval's {kind}, which the streamed path does not run; "
                        f"use --stream off (or a larger --max-memory) for it")


def _sort_key(req: tuple[tuple[str, str], list[int], list[int]]) -> tuple:
    """HFLM's order: longest context + continuation first (ties by tokens)."""
    toks = req[1] + req[2]
    return -len(toks), tuple(toks)


def _context_group(req: tuple[tuple[str, str], list[int], list[int]]) -> list[int]:
    """HFLM's one-forward group: requests sharing context + continuation[:-1]."""
    return req[-2] + req[-1][:-1]


class StreamedLM(HFLM):  # type: ignore[misc,valid-type]
    """lm-eval's HFLM over a streamed model (a `LazyModel.loaded()`): loglikelihoods scored block by block."""

    def __init__(self, loaded: Any, tokenizer: Any, *, batch_size: int = 8, device: Any = None,
                 progress: bool = True, **options: Any) -> None:
        # HFLM takes the skeleton (parameters on the meta device) as it takes an in-memory model: it reads its
        # config (max_length, BOS policy) and tokenizer, never its weights. `options`: HFLM's (e.g. max_length)
        super().__init__(pretrained=loaded.model, tokenizer=tokenizer, backend="causal", batch_size=batch_size,
                         **options)
        self._device = torch.device("cpu")  # where the inputs are built; the blocks visit `self.stream_device`
        self.loaded, self.stream_device, self.progress = loaded, device, progress
        self.passes: list[dict[str, Any]] = []  # what each streamed pass held (one per lm-eval request type call)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        _refuse("loglikelihood_rolling", requests)
        return []

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        _refuse("generate_until", requests)
        return []

    def _batches(self, requests: list[tuple]) -> tuple[Collator, list[dict[str, Any]]]:
        """HFLM's Collator and its batches, each with the right-padded input ids as HFLM builds them."""
        order = Collator(requests, sort_fn=_sort_key, group_by="contexts" if self.logits_cache else None,
                         group_fn=_context_group)
        batches = []
        for chunk in order.get_batched(n=self.batch_size):  # an int batch size (run_tasks never asks for auto)
            inps = []
            for _, context_enc, continuation_enc in chunk:
                if not context_enc or not continuation_enc or len(continuation_enc) > self.max_length:
                    raise KenpruneError(f"lm-eval request with {len(context_enc)} context and {len(continuation_enc)} "
                                        f"continuation tokens cannot be scored (max length {self.max_length})")
                # HFLM's left truncation: the last max_length + 1 tokens, the last one never fed
                inps.append(torch.tensor((context_enc + continuation_enc)[-(self.max_length + 1):][:-1],
                                         dtype=torch.long))
            width = max(len(x) for x in inps)
            batches.append({"chunk": chunk, "inplens": [len(x) for x in inps],
                            "ids": pad_and_concat(width, inps, padding_side="right")})
        return order, batches

    def _loglikelihood_tokens(self, requests: list[tuple], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        from ..engine.streaming import streamed_pass
        from .language_model import head_inputs

        if not requests:
            return []
        order, batches = self._batches(requests)
        loaded = self.loaded
        res: list[tuple[float, bool]] = []

        def score(model: torch.nn.Module, b: int, ids: torch.Tensor) -> None:
            """HFLM's answers for batch b (called in batch order, as HFLM walks its Collator): the continuation
            log-probabilities from the head on the continuation positions only; nothing [len, vocab] is kept."""
            head, states = head_inputs(model, ids)
            for row, ((request_str, ctx_tokens, cont_toks), inplen) in enumerate(zip(batches[b]["chunk"],
                                                                                     batches[b]["inplens"])):
                span = slice(inplen - len(cont_toks), inplen)
                logits = head(states[row, span]) if head is not None else states[row, span]
                logits = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype).unsqueeze(0)  # [1, contlen, vocab]
                greedy = logits.argmax(dim=-1)
                # HFLM's answers, with its one-forward groups expanded the same way
                for request_str, cont_toks, logits in order.get_cache(req_str=request_str, cxt_toks=ctx_tokens,
                                                                      cont_toks=cont_toks, logits=logits):
                    cont = torch.tensor(cont_toks, dtype=torch.long, device=logits.device).unsqueeze(0)
                    max_equal = bool((greedy[:, -cont.shape[1]:] == cont).all())
                    logp = torch.gather(logits, 2, cont.unsqueeze(-1)).squeeze(-1)  # HFLM's gather, as it is
                    answer = (float(logp.sum()), max_equal)
                    res.append(answer)
                    if request_str is not None:
                        self.cache_hook.add_partial("loglikelihood", request_str, answer)

        _, held = streamed_pass(loaded.lazy, [x["ids"] for x in batches], score, device=self.stream_device,
                                activation_budget=loaded.activation_budget, spill_dir=loaded.spill_dir,
                                progress=self.progress and not disable_tqdm, desc="task blocks")
        self.passes.append({**held, "requests": len(requests)})
        return order.get_original(res)

    def held(self, since: int = 0) -> dict[str, Any]:
        """What the streamed passes from the `since`-th on held: the largest of each figure over them."""
        passes = self.passes[since:]
        if not passes:
            return {}
        keys = ("activations_bytes", "spilled_bytes", "rss_max_bytes")
        return {"passes": len(passes), "requests": sum(p["requests"] for p in passes),
                "batches": sum(p["batches"] for p in passes),
                "activation_budget_bytes": passes[0]["activation_budget_bytes"],
                **{k: max(p[k] for p in passes) for k in keys}}
