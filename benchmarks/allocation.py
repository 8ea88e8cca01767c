"""Layer-wise allocation on smollm2-135m with Wanda: uniform, global, ER, OWL, DSA (published and searched).

For each sparsity: searches (evolution and random, same budget) on a cheap `wiki:valid` proxy,
then every allocation is re-checked on the final protocol: the sequential Wanda engine with
the same calibration windows, perplexity on `wiki:test`. Also measures evaluation throughput
with Ray workers against sequential in the same run. Papers' ordering to test:
searched DSA <= OWL < uniform << global.

    python benchmarks/allocation.py --quick                        # smoke run, minutes
    python benchmarks/allocation.py --budget 100 --test-windows 0  # the full configuration (hours on CPU)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kenprune import provenance
from kenprune.allocate.dsa import random_function
from kenprune.allocate.executors import RayExecutor, SequentialExecutor
from kenprune.allocate.fitness import PerplexityFitness, prepared
from kenprune.allocate.layers import block_scores, block_sizes
from kenprune.allocate.model import model_layers
from kenprune.allocate.search import AllocationSpace
from kenprune.errors import KenpruneError
from kenprune.fileio import write_json
from kenprune.jobs.prune import prune
from kenprune.jobs.search import search_allocation
from kenprune.settings import Calibration, Evaluation

PUBLISHED_DSA = "abslog|var|atan,asin|noop"  # DSA's README function for LLaMA-1 7B (70 %, Wanda)
BASELINES = ["uniform", "global", "er", "owl", f"dsa:{PUBLISHED_DSA}"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", default="wanda")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.6, 0.7])
    p.add_argument("--budget", type=int, default=100, help="evaluations per search")
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--children", type=int, default=4)
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--calib-seqlen", type=int, default=256)
    p.add_argument("--eval-windows", type=int, default=4, help="proxy wiki:valid windows per fitness evaluation")
    p.add_argument("--eval-seqlen", type=int, default=256)
    p.add_argument("--test-windows", type=int, default=0, help="wiki:test windows of the final check (0: all)")
    p.add_argument("--seqlen", type=int, default=512, help="final-protocol window length")
    p.add_argument("--workers", type=int, default=2, help="Ray workers for the throughput comparison")
    p.add_argument("--search-workers", type=int, default=2, help="Ray workers evaluating each search (1: sequential)")
    p.add_argument("--throughput-evals", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse-searches", action="store_true",
                   help="take searches already in --out when its search protocol is the same (resume a run)")
    p.add_argument("--quick", action="store_true", help="budget 4, 2 proxy windows, 4 test windows, 60 %% only")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "allocation.json"))
    args = p.parse_args()
    if args.quick:
        args.budget, args.population, args.children, args.eval_windows = 4, 2, 2, 2
        args.test_windows, args.calib_samples, args.sparsities, args.throughput_evals = 4, 4, [0.6], 2
    return args


def finished_searches(path: str, protocol: dict) -> dict:
    """Searches recorded in an earlier run's JSON under the same search protocol (else none)."""
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return dict(earlier.get("searches", {})) if earlier.get("search_protocol") == protocol else {}


def calibration(args) -> Calibration:
    """The calibration windows of both the search proxy and the final check."""
    return Calibration(data="wiki:calib", samples=args.calib_samples, seqlen=args.calib_seqlen, seed=args.seed)


def final_check(spec: str, target: float, args) -> dict:
    """The prune job (sequential engine) with this allocation at the target; wiki:test perplexity."""
    start = time.perf_counter()
    try:
        record = prune(args.model, method=args.method, sparsity=target, allocation=spec,
                       calibration=calibration(args),
                       evaluation=Evaluation(data="wiki:test", seqlen=args.seqlen, windows=args.test_windows or None,
                                             before=False), progress=False)
    except KenpruneError as exc:
        return {"spec": spec, "rejected": str(exc)}
    after = record.quality_of("after")
    ratios = record.details["allocation"]["ratios"]
    by_block: dict[int, list] = {}
    for layer in record.layers:
        if layer.name in ratios:
            by_block.setdefault(layer.block, []).append(layer)
    block_ratios = [ratios[group[0].name] if len({ratios[g.name] for g in group}) == 1
                    else float(np.average([ratios[g.name] for g in group], weights=[g.parameters for g in group]))
                    for _, group in sorted(by_block.items())]
    return {"spec": spec, "perplexity": after.value, "windows": after.protocol.get("windows"),
            "achieved_sparsity": record.details["block_linears"]["sparsity"], "block_ratios": block_ratios,
            "ratio_range": [min(ratios.values()), max(ratios.values())],
            "seconds": time.perf_counter() - start}


def throughput(fitness: PerplexityFitness, space: AllocationSpace, args) -> dict:
    """Evaluations per second, sequential vs Ray workers, on the same candidates (after worker warm-up)."""
    import random

    rng, payloads = random.Random(args.seed + 1), []
    while len(payloads) < args.throughput_evals:
        ratios, reason = space.ratios(random_function(rng))
        if reason is None:
            payloads.append(ratios)
    start = time.perf_counter()
    seq = SequentialExecutor(fitness).map(payloads)
    seq_s = time.perf_counter() - start
    out = {"evaluations": len(payloads), "sequential_seconds": seq_s, "sequential_evals_per_s": len(payloads) / seq_s}
    try:
        start = time.perf_counter()
        ray_exec = RayExecutor(fitness, workers=args.workers)
        ray_exec.map(payloads[:args.workers])  # each worker loads its model and scores once
        warm = time.perf_counter() - start
        start = time.perf_counter()
        par = ray_exec.map(payloads)
        par_s = time.perf_counter() - start
        ray_exec.close()
    except KenpruneError as exc:
        return {**out, "ray": f"unavailable: {exc}"}
    return {**out, "ray_workers": args.workers, "ray_startup_and_warmup_seconds": warm, "ray_seconds": par_s,
            "ray_evals_per_s": len(payloads) / par_s, "speedup": seq_s / par_s,
            "max_abs_fitness_difference": float(np.max(np.abs(np.array(seq) - np.array(par))))}


def main() -> int:
    args = parse_args()
    fitness = PerplexityFitness(model=args.model, method=args.method, proxy="oneshot",
                                calib_samples=args.calib_samples, calib_seqlen=args.calib_seqlen,
                                windows=args.eval_windows, seqlen=args.eval_seqlen, seed=args.seed)
    setup = prepared(fitness)
    loaded = setup.loaded
    layers = model_layers(loaded.model, setup.scores(args.method, progress=True))
    rows, searches = [], {}
    record = {"benchmark": "allocation", "model": args.model, "method": args.method,
              "final_protocol": {"data": "wiki:test", "seqlen": args.seqlen, "windows": args.test_windows or "all",
                                 "pruning": "sequential engine",
                                 "calibration": {"data": "wiki:calib", "samples": args.calib_samples,
                                                 "seqlen": args.calib_seqlen, "seed": args.seed}},
              "search_protocol": {**fitness.to_dict(), "budget": args.budget, "population": args.population,
                                  "children": args.children},
              "config": vars(args), "rows": rows, "searches": searches, "complete": False, **provenance.record()}
    done = finished_searches(args.out, record["search_protocol"]) if args.reuse_searches else {}
    for target in args.sparsities:
        for strategy in ("evolution", "random"):
            if f"{strategy}@{target}" in done:  # same search protocol, already paid for
                searches[f"{strategy}@{target}"] = done[f"{strategy}@{target}"]
                print(f"reusing search {strategy}@{target} from {args.out}", file=sys.stderr)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                found = search_allocation(args.model, calibration=calibration(args),
                                          evaluation=Evaluation(data="wiki:valid", seqlen=args.eval_seqlen,
                                                                windows=args.eval_windows),
                                          out=tmp, method=args.method, sparsity=target, budget=args.budget,
                                          workers=args.search_workers, strategy=strategy,
                                          population=args.population, children=args.children, progress=True)
                res = {**found.details, "wall_seconds": time.perf_counter() - start}
            searches[f"{strategy}@{target}"] = res
            write_json(args.out, record)  # partial results survive an interrupted run
        specs = BASELINES + [f"dsa:{searches[f'{s}@{target}']['function']}" for s in ("evolution", "random")]
        names = ["uniform", "global", "ER", "OWL", "DSA published", "DSA searched (evolution)", "DSA random search"]
        for name, spec in zip(names, specs):
            row = {"allocation": name, "sparsity": target, **final_check(spec, target, args)}
            rows.append(row)
            write_json(args.out, record)
            print(f"  {name:26s} {target:.2f} {row.get('perplexity', float('nan')):10.2f} {spec}", file=sys.stderr)
    space = AllocationSpace(block_scores(layers), block_sizes(layers), args.sparsities[-1])
    record["throughput"] = throughput(fitness, space, args)
    record["complete"] = True
    write_json(args.out, record)
    print_table(rows, record)
    print(f"wrote {args.out}")
    return 0


def print_table(rows: list[dict], record: dict) -> None:
    print(f"\n{'allocation':28s} {'sparsity':>8s} {'wiki:test ppl':>14s} {'achieved':>9s} {'ratio range':>15s}")
    for r in rows:
        if "rejected" in r:
            print(f"{r['allocation']:28s} {r['sparsity']:8.2f} {'rejected':>14s}  {r['rejected'][:70]}")
            continue
        lo, hi = r["ratio_range"]
        print(f"{r['allocation']:28s} {r['sparsity']:8.2f} {r['perplexity']:14.2f} {r['achieved_sparsity']:9.4f} "
              f"{lo:7.3f}-{hi:.3f}")
    for key, s in record["searches"].items():
        print(f"search {key}: best {s['function']} proxy ppl {s['fitness']:.2f}, "
              f"{s['result']['evaluations']} evals in {s['result']['seconds']:.0f} s (wall {s['wall_seconds']:.0f} s)")
    t = record["throughput"]
    print("throughput: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in t.items()}))


if __name__ == "__main__":
    sys.exit(main())
