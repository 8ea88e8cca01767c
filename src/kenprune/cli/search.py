"""`kenprune search`: evolutionary search for a DSA layer-wise allocation function (Ray-parallel)."""
from __future__ import annotations

import argparse

from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="search a DSA allocation function (evolution or random, Ray-parallel)")
    p.add_argument("--model", default="smollm2-135m", help="registry name or local folder")
    p.add_argument("--method", default="wanda", help="element-wise score and pruning method (default wanda)")
    p.add_argument("--sparsity", type=float, default=0.7, help="target sparsity of the block Linears")
    p.add_argument("--budget", type=int, default=100, help="model evaluations (default 100)")
    p.add_argument("--seconds", type=float, default=None, help="also stop after this much search time")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel evaluations; >1 uses local Ray (default: half the cores, at most 4)")
    p.add_argument("--ray-address", default=None,
                   help="join a Ray cluster (HOST:PORT, ray://HOST:PORT or auto); every node needs kenprune installed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="search-out", help="folder for checkpoint.json, best.json, search.json")
    p.add_argument("--strategy", default="evolution", choices=["evolution", "random"],
                   help="evolution, or the random-search baseline")
    p.add_argument("--lambda", dest="lam", type=float, default=0.08, help="ratio spread (default 0.08)")
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--children", type=int, default=4, help="evaluations per generation")
    p.add_argument("--proxy", default="oneshot", choices=["oneshot", "sequential"],
                   help="fitness pruning: dense-pass masks (fast) or the sequential engine")
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--calib-seqlen", type=int, default=256)
    p.add_argument("--eval-data", default="wiki:valid", help="fitness split (never a test split)")
    p.add_argument("--eval-windows", type=int, default=4, help="fitness windows (a cheap proxy)")
    p.add_argument("--eval-seqlen", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="a smoke run: budget 4, 2 windows, 4 calibration samples")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.search import search_allocation

    if args.quick:
        args.budget, args.eval_windows, args.calib_samples, args.population, args.children = 4, 2, 4, 2, 2
    result = search_allocation(
        args.model, args.method, args.sparsity, budget=args.budget, seconds=args.seconds, workers=args.workers,
        ray_address=args.ray_address, seed=args.seed, out=args.out, strategy=args.strategy, lam=args.lam,
        population=args.population, children=args.children, proxy=args.proxy, calib_samples=args.calib_samples,
        calib_seqlen=args.calib_seqlen, eval_data=args.eval_data, eval_windows=args.eval_windows,
        eval_seqlen=args.eval_seqlen)
    res = result["result"]
    print(f"best function {result['function']}  fitness {result['fitness']:.4f} "
          f"({result['fitness_protocol']['data']} perplexity, {res['evaluations']} evaluations, "
          f"{res['generations']} generations, {res['seconds']:.1f} s)")
    print(f"prune with: kenprune prune --allocation {args.out}/best.json  (or --allocation 'dsa:{result['function']}')")
    write_report_quietly(args.out)
    return 0
