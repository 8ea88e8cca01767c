"""Federated structured importances on smollm2-135m: three non-IID clients, merged sums vs centralized vs each alone.

Clients: wiki, lee and newsgroups-mini (calib splits, `--samples` windows of `--seqlen` tokens each, seeded).
Taylor importance (LLM-Pruner's default) at `--ratio` of heads / MLP channels per block:
  centralized  the ordinary `prune_structured` (float32 gradient means) on the union of the clients' windows
  merged       `prune_structured(..., clients=...)`: each client's float64 gradient sums, merged (weighting tokens)
  <client>     the ordinary `prune_structured` on that client's windows alone
Perplexity on each domain's test split (`--eval-windows` windows of `--eval-seqlen`, 95 % interval over windows),
whether merged and centralized kept the same units (identical weights), and each client's agreement with the
merged selection (same keep/remove decisions; Jaccard overlap of removed units). Scoring seconds are one run
each, alternated centralized / merged: informational, not a speed claim.

    python benchmarks/federated.py --structured            # -> results/federated_structured.json
    python benchmarks/federated_structured.py --quick      # smoke run
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, save  # noqa: E402
from federated import DOMAINS, domain_data, domain_ppl  # noqa: E402

from kenprune.models.loading import LoadedModel, load_model  # noqa: E402
from kenprune.structured.plan import PrunePlan  # noqa: E402
from kenprune.structured.prune import prune_structured  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--importance", default="taylor")
    p.add_argument("--ratio", type=float, default=0.2)
    p.add_argument("--samples", type=int, default=8, help="calibration windows per client")
    p.add_argument("--seqlen", type=int, default=128)
    p.add_argument("--eval-windows", type=int, default=4)
    p.add_argument("--eval-seqlen", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="2 windows of 64 per client, 2 eval windows of 128")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.seqlen, args.eval_windows, args.eval_seqlen = 2, 64, 2, 128
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), os.getloadavg()
    loaded = load_model(args.model)
    dense = loaded.model
    clients, evals, bos = domain_data(loaded, args)
    union = torch.cat([c.windows for c in clients])
    plan = PrunePlan(args.ratio)

    def pruned(**how):
        copy_ = LoadedModel(copy.deepcopy(dense), loaded.tokenizer, loaded.name, loaded.source, loaded.task,
                            loaded.bos)
        t = time.perf_counter()
        result = prune_structured(copy_, plan, importance=args.importance, progress=False, **how)
        return copy_.model, result, time.perf_counter() - t

    ppl = {"dense": domain_ppl(dense, evals)}
    seconds: dict[str, float] = {}
    models = {}
    for name in ("centralized", "merged"):  # alternated with nothing else running in between
        models[name], result, seconds[name] = pruned(**({"windows": union} if name == "centralized" else
                                                        {"clients": clients}))
        if name == "merged":
            fed = result.extra["federated"]
        print(f"{name}: {seconds[name]:.0f} s scoring+removal, {time.perf_counter() - start:.0f} s in all", flush=True)
    a, b = models["centralized"].state_dict(), models["merged"].state_dict()
    same = a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
    for name in ("centralized", "merged"):
        ppl[name] = domain_ppl(models.pop(name), evals)
    for c in clients:
        model, _, seconds[f"{c.name} alone"] = pruned(windows=c.windows)
        ppl[f"{c.name} alone"] = domain_ppl(model, evals)
        del model
        print(f"{c.name} alone done, {time.perf_counter() - start:.0f} s", flush=True)
    agreement = fed["agreement"]
    rows = []
    for name, values in ppl.items():
        client = name.replace(" alone", "")
        rows.append({"calibration": name, **{f"ppl {d}": v["ppl"] for d, v in values.items()},
                     **{f"95% {d}": f"{v['lo']:.1f}-{v['hi']:.1f}" for d, v in values.items()},
                     "same decisions": agreement["clients"].get(client),
                     "removed overlap": agreement["removed_overlap"].get(client), "s": seconds.get(name)})
    columns = ["calibration", *[f"ppl {d}" for d in DOMAINS], *[f"95% {d}" for d in DOMAINS], "same decisions",
               "removed overlap", "s"]
    print_table(rows, columns)
    print(f"\nmerged selection == centralized selection on the union (identical weights): {same}")
    config = {"model": args.model, "importance": args.importance, "ratio": args.ratio, "plan": vars(plan),
              "clients": fed["clients"], "weighting": fed["weighting"],
              "calibration": {"windows_per_client": args.samples, "seqlen": args.seqlen, "seed": args.seed},
              "evaluation": {"splits": [f"{d}:test" for d in DOMAINS], "windows": args.eval_windows,
                             "seqlen": args.eval_seqlen, "bos": bos, "interval": "95 % over windows, normal approx."},
              "threads": args.threads, "quick": args.quick}
    save("federated_structured" if not args.quick else "federated_structured_quick", config, rows,
         merged_equals_centralized=same, agreement=agreement, ppl=ppl, seconds=seconds,
         loadavg={"before": load_before, "after": os.getloadavg()}, wall_seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
