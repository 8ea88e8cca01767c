"""Token pruning on all-MiniLM-L6-v2: Zero-TPrune against ToMe, truncation, random and [CLS]-attention top-k.

Fidelity (cosine of each pruned sentence vector to its dense one, mean and 5th percentile) on wiki:test
paragraphs cut to 32 tokens (with nearest-neighbour recall@10 against the dense vectors over --recall-texts
paragraphs) and on wiki:test passages of 64, 128 and 256 tokens (consecutive paragraphs joined); accuracy of
a logistic probe trained on dense vectors (pang-lee, newsgroups-mini cut to 64 tokens: train on calib+valid,
test on test, 95 % bootstrap intervals) and of a classifier fine-tuned with `kenprune finetune` (pang-lee, 40
steps) evaluated under token pruning; FLOPs from the real token counts; latency median and p90 of dense
and pruned models timed in alternation per length bucket, batch size and thread count, with the load
average (other jobs share the machine's 2 cores: read the ratios, not the seconds). Each method at keep
ratios 0.8, 0.6 and 0.4 (one keep ratio: pruning in layers 1..3, the same fraction each, rho left from
layer 3 to 5).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, save  # noqa: E402

METHODS = ("zero-tprune", "tome", "truncate", "random", "cls-attention")
KEEPS = (0.8, 0.6, 0.4)
T0 = time.perf_counter()


def log(text: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s, load {os.getloadavg()[0]:.1f}] {text}", flush=True)


def probe_fit(x, y, classes: int, steps: int = 200, decay: float = 1e-3):
    """A multinomial logistic regression on fixed features (L-BFGS, L2 penalty): the probe."""
    import torch

    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    xd = x.double()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xd @ w + b, y) + decay * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def bootstrap(correct, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    import torch

    g = torch.Generator().manual_seed(seed)
    c = correct.double()
    idx = torch.randint(0, len(c), (n, len(c)), generator=g)
    means = c[idx].mean(1)
    return float(torch.quantile(means, 0.025)), float(torch.quantile(means, 0.975))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recall-texts", type=int, default=1000, help="wiki:test paragraphs for recall@10 (32 tokens)")
    parser.add_argument("--recall-keeps", type=float, nargs="+", default=[0.6],
                        help="keep ratios measured on the recall set (the other buckets get all of 0.8, 0.6, 0.4)")
    parser.add_argument("--bucket-texts", type=int, nargs=3, default=[64, 32, 16],
                        help="passages measured at 64, 128 and 256 tokens")
    parser.add_argument("--threads", type=int, default=2, help="threads for the fidelity passes")
    parser.add_argument("--latency-repeats", type=int, nargs=2, default=[8, 3],
                        help="alternating rounds at batch 1 and at batch 32")
    parser.add_argument("--finetune-steps", type=int, default=40)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    args = parser.parse_args()
    if args.quick:
        args.recall_texts, args.bucket_texts, args.latency_repeats, args.finetune_steps = 40, [8, 4, 4], [2, 1], 2

    import torch

    from kenprune.data.corpora import load_documents
    from kenprune.jobs.finetune import finetune
    from kenprune.models.loading import load_model
    from kenprune.tokens import TokenOptions, apply_token_pruning, remove_token_pruning
    from kenprune.tokens.measure import (alternating_latency, cosine_stats, embed, encode, flops, paragraphs,
                                         passages, recall_at_k, summed_counts)
    from kenprune.tokens.schedule import resolve

    torch.set_num_threads(args.threads)
    loaded = load_model("minilm-l6")
    model, tok = loaded.model, loaded.tokenizer
    special = tuple(tok.all_special_ids)
    layers = len(model.encoder.layer)
    wiki = load_documents("wiki:test")

    def prune(net, method, keep, classifier=False):
        apply_token_pruning(net, method, keep, special_ids=special,
                            options=TokenOptions(cls_weight=classifier, seed=0))

    # ------------------------------------------------------------------ fidelity on wiki:test
    sets = {32: paragraphs(wiki)[:args.recall_texts]}
    for length, count in zip((64, 128, 256), args.bucket_texts):
        sets[length] = passages(wiki, tok, length)[:count]
    fidelity_rows = []
    for length, texts in sets.items():
        counts: list = []
        dense = embed(model, tok, texts, length, 32, counts=counts)
        dense_flops = flops(summed_counts(counts), model.config, len(texts))
        mean_len = sum(c[0][0] for c in counts) / len(texts)
        log(f"dense {len(texts)} texts at {length} tokens (mean {mean_len:.1f})")
        for keep in (args.recall_keeps if length == 32 else KEEPS):
            for method in METHODS:
                prune(model, method, keep)
                counts = []
                pruned = embed(model, tok, texts, length, 32, counts=counts)
                remove_token_pruning(model)
                c = summed_counts(counts)
                row = {"length": length, "texts": len(texts), "mean_tokens": mean_len, "keep": keep,
                       "method": method, **{k: v for k, v in cosine_stats(dense, pruned).items() if k != "n"},
                       "recall@10": recall_at_k(dense, pruned, 10) if len(texts) > 10 else None,
                       "tokens_last_layer": c[-1][1] / len(texts),
                       "flops_ratio": flops(c, model.config, len(texts)) / dense_flops}
                fidelity_rows.append(row)
            log(f"  keep {keep}: " + ", ".join(f"{r['method']} {r['cosine_mean']:.4f}" for r in fidelity_rows[-5:]))
    print_table(fidelity_rows, ["length", "texts", "keep", "method", "cosine_mean", "cosine_p5", "recall@10",
                                "tokens_last_layer", "flops_ratio"])

    # ------------------------------------------------------------------ probes on dense vectors
    probe_rows = []
    for corpus, length in (("pang-lee", 64), ("newsgroups-mini", 64)):
        train = load_documents(f"{corpus}:calib") + load_documents(f"{corpus}:valid")
        test = load_documents(f"{corpus}:test")
        labels = sorted({d.label for d in train + test})
        ytr = torch.tensor([labels.index(d.label) for d in train])
        yte = torch.tensor([labels.index(d.label) for d in test])
        w, b = probe_fit(embed(model, tok, [d.text for d in train], length, 32), ytr, len(labels))
        dense_correct = (embed(model, tok, [d.text for d in test], length, 32).double() @ w + b).argmax(-1) == yte
        probe_rows.append({"task": corpus, "keep": 1.0, "method": "dense", "accuracy": float(dense_correct.double()
                           .mean()), "ci95": bootstrap(dense_correct), "n": len(test)})
        for keep in KEEPS:
            for method in METHODS:
                prune(model, method, keep)
                pred = (embed(model, tok, [d.text for d in test], length, 32).double() @ w + b).argmax(-1)
                remove_token_pruning(model)
                correct = pred == yte
                probe_rows.append({"task": corpus, "keep": keep, "method": method,
                                   "accuracy": float(correct.double().mean()), "ci95": bootstrap(correct),
                                   "n": len(test)})
        log(f"probe {corpus} done")

    # ------------------------------------------------------------------ a fine-tuned classifier under pruning
    with tempfile.TemporaryDirectory() as tmp:
        record = finetune("minilm-l6", "pang-lee", out=Path(tmp) / "ft", steps=args.finetune_steps, progress=False)
        clf = load_model(str(Path(tmp) / "ft"))
    test = load_documents("pang-lee:test")
    label2id = {str(k): int(v) for k, v in clf.model.config.label2id.items()}
    y = torch.tensor([label2id[d.label] for d in test])
    texts = [d.text for d in test]
    correct = embed(clf.model, clf.tokenizer, texts, 128, 32, classifier=True).argmax(-1) == y
    probe_rows.append({"task": f"finetuned pang-lee ({args.finetune_steps} steps)", "keep": 1.0, "method": "dense",
                       "accuracy": float(correct.double().mean()), "ci95": bootstrap(correct), "n": len(test)})
    for keep in KEEPS:
        for method in METHODS:
            prune(clf.model, method, keep, classifier=True)
            correct = embed(clf.model, clf.tokenizer, texts, 128, 32, classifier=True).argmax(-1) == y
            remove_token_pruning(clf.model)
            probe_rows.append({"task": f"finetuned pang-lee ({args.finetune_steps} steps)", "keep": keep,
                               "method": method, "accuracy": float(correct.double().mean()),
                               "ci95": bootstrap(correct), "n": len(test)})
    log("fine-tuned classifier done")
    print_table(probe_rows, ["task", "keep", "method", "accuracy", "ci95", "n"])

    # ------------------------------------------------------------------ latency: dense vs pruned, alternating
    latency_rows = []
    if not args.skip_latency:
        stream = " ".join(paragraphs(wiki))
        ids = tok(stream, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        # (threads, batch, length, methods): batch 1 everywhere, batch 32 at 64 and 256 tokens, 1 thread at 256 only
        grid = [(2, 1, n, ("zero-tprune", "tome", "truncate")) for n in (32, 64, 128, 256)]
        grid += [(2, 32, n, ("zero-tprune", "tome")) for n in (64, 256)]
        grid += [(1, 1, 256, ("zero-tprune", "tome", "truncate")), (1, 32, 256, ("zero-tprune",))]
        if args.quick:
            grid = [(2, 1, 32, ("zero-tprune",)), (2, 32, 64, ("tome",))]
        for threads, batch, length, methods in grid:
            torch.set_num_threads(threads)
            rows = ids[: batch * (length - 2)].view(batch, length - 2)
            enc = encode(tok, tok.batch_decode(rows), length)
            repeats = args.latency_repeats[0 if batch == 1 else 1]
            for method in methods:
                overhead: list[float] = []

                def dense_call():
                    model(**enc)

                def pruned_call():
                    model(**enc)
                    overhead.append(model.token_pruning.last.overhead_seconds)

                prune(model, method, 0.6)
                pruned_model_call = pruned_call

                def dense_wrapped():
                    remove_token_pruning(model)
                    dense_call()

                def pruned_wrapped():
                    prune(model, method, 0.6)
                    pruned_model_call()

                result = alternating_latency(dense_wrapped, pruned_wrapped, repeats)
                remove_token_pruning(model)
                latency_rows.append({"threads": threads, "batch": batch, "length": length, "method": method,
                                     "tokens_per_input": float(enc["attention_mask"].sum()) / batch,
                                     "keep": 0.6, "dense_median_ms": 1e3 * result["dense"]["median"],
                                     "dense_p90_ms": 1e3 * result["dense"]["p90"],
                                     "pruned_median_ms": 1e3 * result["pruned"]["median"],
                                     "pruned_p90_ms": 1e3 * result["pruned"]["p90"], "speedup": result["speedup"],
                                     "overhead_ms": 1e3 * statistics.median(overhead), "repeats": repeats,
                                     "load_before": result["loadavg"]["before"][0],
                                     "load_after": result["loadavg"]["after"][0]})
                log(f"latency threads {threads} batch {batch} length {length} {method}: "
                    f"{latency_rows[-1]['speedup']:.2f}x")
        print_table(latency_rows, ["threads", "batch", "length", "method", "dense_median_ms", "dense_p90_ms",
                                   "pruned_median_ms", "pruned_p90_ms", "speedup", "overhead_ms", "load_before"])

    schedule = {str(k): {str(layer): r for layer, r in resolve(k, layers).items()} for k in KEEPS}
    save("token_pruning", {
        "model": "minilm-l6", "data": {"fidelity": "wiki:test", "probes": "pang-lee, newsgroups-mini (calib+valid "
                                       "train, test)", "finetuned": "pang-lee"},
        "sets": {str(k): len(v) for k, v in sets.items()}, "keeps": list(KEEPS), "methods": list(METHODS),
        "schedules": schedule, "threads_fidelity": args.threads, "latency_repeats": args.latency_repeats,
        "seed": 0, "finetune_steps": args.finetune_steps, "wall_seconds": time.perf_counter() - T0,
        "note": "2 shared cores: other jobs ran during the measurement; dense and pruned alternate, medians",
    }, fidelity_rows, probes=probe_rows, latency=latency_rows)


if __name__ == "__main__":
    main()
