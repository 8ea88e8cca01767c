"""`kenprune tokens`: token pruning at inference (Zero-TPrune, ToMe, baselines), measured against dense.

The run loads an encoder (mean-pooled sentence vectors: fidelity is the cosine to the dense vector) or a
sequence classifier (e.g. a `kenprune finetune` run folder: accuracy dense vs pruned on the labelled test
split), prunes its tokens in place, times dense and pruned in alternation on one batch, counts tokens and
FLOPs per layer from the real counts, and traces a few inputs layer by layer for the report.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import KenpruneError
from ..measure import StageTimer
from ..record import Layer, Quality
from ..settings import DEFAULT_ENCODER, Output, TokenSettings, given
from .common import check_output, new_record, output_folder, write_record

if TYPE_CHECKING:
    from ..models.loading import LoadedModel


def _options(settings: TokenSettings, classifier: bool, pooling: str):
    from ..tokens import TokenOptions

    cls = settings.wpr_start == "cls" or (settings.wpr_start == "auto" and (classifier or pooling == "cls"))
    return TokenOptions(cls_weight=cls, vhf=(settings.vhf_min, settings.vhf_max),
                        similarity_share=settings.similarity_share, seed=settings.seed)


def _texts(settings: TokenSettings, classifier: bool, labels: dict[str, int] | None):
    """(texts, labels or None) of the run's data: labelled documents for a classifier, else paragraphs."""
    from ..data.corpora import load_documents
    from ..tokens.measure import paragraphs

    docs = load_documents(settings.data)
    if classifier:
        if any(d.label is None for d in docs):
            raise KenpruneError(f"{settings.data} is not labelled; a classifier is measured on a labelled split "
                                f"(pang-lee:test, newsgroups-mini:test)")
        missing = sorted({d.label for d in docs} - set(labels or {}))
        if missing:
            raise KenpruneError(f"the classifier's labels {sorted(labels or {})} do not cover {missing} in "
                                f"{settings.data}")
        docs = docs[:settings.texts]
        return [d.text for d in docs], torch.tensor([labels[d.label] for d in docs])
    texts = paragraphs(docs)[:settings.texts]
    if not texts:
        raise KenpruneError(f"{settings.data} has no paragraph of 8 words or more to measure on")
    return texts, None


def _example(tokenizer, model, text: str, seqlen: int) -> dict[str, Any]:
    """One input traced layer by layer: its tokens and, per layer, the original positions still present."""
    from ..tokens.measure import encode

    enc = encode(tokenizer, [text], seqlen)
    with torch.inference_mode():
        model(**enc)
    state = model.token_pruning.last
    return {"tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()),
            "survivors": [[int(p) for p in layer[0].tolist() if p >= 0] for layer in state.trace],
            "sizes": [float(s) for s, v in zip(state.size[0].tolist(), state.valid[0].tolist()) if v]}


def run(model: "str | LoadedModel" = DEFAULT_ENCODER, settings: TokenSettings = TokenSettings(), *,
        output: Output = Output(), progress: bool = True) -> "Any":
    """Prune `model`'s tokens with settings.method under its schedule and measure it against dense."""
    from ..models.loading import SEQUENCE_CLASSIFICATION, load_model
    from ..tokens import apply_token_pruning, remove_token_pruning, token_adapter_for
    from ..tokens.measure import (alternating_latency, cosine_stats, embed, encode, flops, summed_counts)
    from ..tokens.schedule import FlopsTarget, describe, parse, resolve

    settings.check()
    check_output(output, [model if isinstance(model, str) else None])
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model) if isinstance(model, str) else model
    net, tokenizer = loaded.model, loaded.tokenizer
    adapter = token_adapter_for(net)  # one line listing the supported families
    layers = len(adapter.layers(getattr(net, "base_model", net)))
    spec = settings.resolved_schedule()
    spec = parse(spec) if isinstance(spec, str) else spec  # --schedule flops:0.7 is a FLOPs target too
    target = None
    if isinstance(spec, FlopsTarget):  # the record shows its schedule at --seqlen; the patch resolves per length
        schedule, target = _target(spec, net.config, layers, settings.seqlen, 1 + adapter.protect_last)
    else:
        schedule = resolve(spec, layers)
    classifier = loaded.task == SEQUENCE_CLASSIFICATION
    label2id = {str(k): int(v) for k, v in net.config.label2id.items()} if classifier else None
    texts, labels = _texts(settings, classifier, label2id)
    options = _options(settings, classifier, adapter.pooling)
    special = tuple(getattr(tokenizer, "all_special_ids", ()) or ())
    record = new_record("tokens", loaded.identity(), settings.method, given(model=model if isinstance(model, str)
                                                                             else loaded.name, tokens=settings),
                        {"tokens": {**settings.to_dict(), "schedule": {str(k): v for k, v in schedule.items()},
                                    "wpr_start": "cls" if options.cls_weight else "uniform"}})

    def patch(trace: bool = False) -> None:
        apply_token_pruning(net, settings.method, spec if target else schedule or 1.0, options=options,
                            special_ids=special, trace=trace)

    with output_folder(output) as tmp:
        dense_counts: list = []
        pruned_counts: list = []
        with timer.stage("dense"):
            remove_token_pruning(net)
            dense = embed(net, tokenizer, texts, settings.seqlen, settings.batch_size, classifier, progress,
                          dense_counts)
        with timer.stage("pruned"):
            patch()
            exact: list = []
            pruned = embed(net, tokenizer, texts, settings.seqlen, settings.batch_size, classifier, progress,
                           pruned_counts, exact)
        n = len(texts)
        if classifier:
            acc = [float((x.argmax(-1) == labels).double().mean()) for x in (dense, pruned)]
            protocol = {"texts": n, "seqlen": settings.seqlen, "agreement": float(
                (dense.argmax(-1) == pruned.argmax(-1)).double().mean())}
            record.quality += [Quality("accuracy", acc[0], settings.data, "before", "dense", protocol),
                               Quality("accuracy", acc[1], settings.data, "after", settings.method, protocol)]
            fidelity = {"accuracy_dense": acc[0], "accuracy_pruned": acc[1], **protocol}
        else:
            fidelity = {**cosine_stats(dense, pruned), "texts": n, "seqlen": settings.seqlen}
            protocol = {"texts": n, "seqlen": settings.seqlen, "pooling": "mean over surviving tokens, size-weighted",
                        "cosine_p5": fidelity["cosine_p5"]}
            record.quality += [Quality("cosine to dense", 1.0, settings.data, "before", "dense", protocol),
                               Quality("cosine to dense", fidelity["cosine_mean"], settings.data, "after",
                                       settings.method, protocol)]
        d_counts, p_counts = summed_counts(dense_counts), summed_counts(pruned_counts)
        dense_flops, pruned_flops = flops(d_counts, net.config, n), flops(p_counts, net.config, n)
        per_layer = []
        for i, ((d_in, _), (p_in, p_out)) in enumerate(zip(d_counts, p_counts)):
            per_layer.append({"layer": i, "tokens_in": p_in / n, "tokens_out": p_out / n, "dense": d_in / n,
                              "kept_fraction": p_out / d_in if d_in else 1.0, "pruning": i in schedule})
            record.layers.append(Layer(f"layer {i}", [p_out], p_out / d_in if d_in else 1.0, block=i,
                                       allocated=schedule.get(i)))
        record.layer_quantity = "kept token fraction"
        with timer.stage("latency"):
            batch = encode(tokenizer, texts[:settings.batch_size], settings.seqlen)
            overhead: list[float] = []

            def dense_call():
                remove_token_pruning(net)
                net(**batch)

            def pruned_call():
                patch()
                net(**batch)
                overhead.append(net.token_pruning.last.overhead_seconds)

            latency = alternating_latency(dense_call, pruned_call, settings.latency_repeats)
            latency.update({"batch": len(batch["input_ids"]), "tokens": int(batch["attention_mask"].sum()),
                            "overhead_median": statistics.median(overhead)})
        with timer.stage("examples"):
            patch(trace=True)
            examples = [_example(tokenizer, net, t, settings.seqlen) for t in texts[:settings.examples]]
        remove_token_pruning(net)
        final = per_layer[-1]["kept_fraction"] if per_layer else 1.0
        record.details.update({
            "method": settings.method, "schedule": {str(k): v for k, v in schedule.items()},
            "schedule_text": describe(schedule), "layers": layers, "task": loaded.task, "data": settings.data,
            "fidelity": fidelity, "tokens_per_layer": per_layer,
            "flops": {"dense": dense_flops, "pruned": pruned_flops, "ratio": pruned_flops / dense_flops},
            "latency": latency, "examples": examples, "sparsity": 1.0 - final,
            **({"flops_target": {**target, "achieved": sum(p for _, p in exact) / sum(d for d, _ in exact),
                                 "lengths_out_of_reach": _out_of_reach(spec, net.config, layers, tokenizer, texts,
                                                                       settings.seqlen, 1 + adapter.protect_last)}}
               if target else {}),
            "options": {"wpr_start": "cls" if options.cls_weight else "uniform", "vhf": list(options.vhf or ()),
                        "similarity_share": options.similarity_share,
                        "iterations": [patch_iterations(i, layers) for i in range(layers)]},
        })
        write_record(record, tmp, timer)
    return record


def _target(spec: Any, config: Any, layers: int, seqlen: int, protected: int) -> tuple[dict[int, float], dict]:
    """A FLOPs target resolved at --seqlen (one-line error when out of reach there): its schedule there and the
    record's view of it; the patch resolves it again at each input's own length."""
    from ..tokens.schedule import flops_schedule, schedule_flops

    rho, schedule = flops_schedule(spec.ratio, layers, seqlen, config.hidden_size, config.intermediate_size, protected)
    return schedule, {
        "target": spec.ratio, "seqlen": seqlen, "rho_at_seqlen": rho,
        "schedule_at_seqlen": {str(k): v for k, v in schedule.items()},
        "model_ratio_at_seqlen": schedule_flops(schedule, layers, seqlen, config.hidden_size, config.intermediate_size,
                                                protected),
        "resolution": "at each input's length: the keep ratio rho of the single-ratio shape whose FLOPs "
                      "(tokens.schedule.schedule_flops) match the target, by bisection"}


def _out_of_reach(spec: Any, config: Any, layers: int, tokenizer: Any, texts: list[str], seqlen: int,
                  protected: int) -> list[int]:
    """Input lengths of the measured texts at which the target is out of reach (only the special tokens kept)."""
    from ..tokens.schedule import lowest_flops_ratio

    lengths = {len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=seqlen)["input_ids"]}
    return sorted(n for n in lengths
                  if lowest_flops_ratio(layers, n, config.hidden_size, config.intermediate_size, protected)
                  > spec.ratio + 1e-10)


def patch_iterations(layer: int, layers: int) -> int:
    from ..tokens.functional import default_iterations

    return default_iterations(layer, layers)


def prune_tokens(model: "str | LoadedModel" = DEFAULT_ENCODER, method: str = TokenSettings.method, *,
           out: str | Path | None = None, overwrite: bool = False, progress: bool = True, **options: Any):
    """`run` with TokenSettings given as keywords (keep, schedule, data, texts, seqlen, ...)."""
    return run(model, TokenSettings(method=method, **options), output=Output(out, overwrite), progress=progress)
