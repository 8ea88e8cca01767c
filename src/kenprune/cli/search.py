"""`kenprune search`: evolutionary search for a DSA layer-wise allocation function (Ray-parallel)."""
from __future__ import annotations

import argparse

from ..jobs.search import DEFAULT_OUT
from ..settings import SEARCH_CALIBRATION, SEARCH_EVALUATION, SEARCH_PROXIES, SEARCH_STRATEGIES, Calibration, \
    Evaluation, SearchSettings
from .options import add_model, add_tasks, output_from, task_lines, tasks_from
from .report import write_report_quietly

QUICK = {"budget": 4, "eval_windows": 2, "nsamples": 4, "population": 2, "children": 2}


def register(subparsers: argparse._SubParsersAction) -> None:
    d, c, e = SearchSettings(), SEARCH_CALIBRATION, SEARCH_EVALUATION
    p = subparsers.add_parser("search", help="search a DSA allocation function (evolution or random, Ray-parallel)")
    add_model(p)
    p.add_argument("--method", default=d.method, help=f"element-wise score and pruning method (default {d.method})")
    p.add_argument("--sparsity", type=float, default=d.sparsity,
                   help=f"target sparsity of the block Linears (default {d.sparsity})")
    p.add_argument("--budget", type=int, default=d.budget, help=f"model evaluations (default {d.budget})")
    p.add_argument("--seconds", type=float, default=d.seconds, help="also stop after this much search time")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="parallel evaluations; >1 uses local Ray (default: half the cores, at most 4)")
    p.add_argument("--ray-address", default=d.ray_address,
                   help="join a Ray cluster (HOST:PORT, ray://HOST:PORT or auto); every node needs kenprune installed")
    p.add_argument("--seed", type=int, default=c.seed, help=f"search and calibration seed (default {c.seed})")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"folder for checkpoint.json, best.json, run.json "
                                                      f"(default {DEFAULT_OUT})")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an existing search folder (default: resume from its checkpoint)")
    p.add_argument("--strategy", default=d.strategy, choices=SEARCH_STRATEGIES,
                   help=f"evolution, or the random-search baseline (default {d.strategy})")
    p.add_argument("--lambda", dest="lam", type=float, default=d.lam, help=f"ratio spread (default {d.lam})")
    p.add_argument("--population", type=int, default=d.population, help=f"functions kept (default {d.population})")
    p.add_argument("--children", type=int, default=d.children,
                   help=f"evaluations per generation (default {d.children})")
    p.add_argument("--proxy", default=d.proxy, choices=SEARCH_PROXIES,
                   help=f"fitness pruning: dense-pass masks (fast) or the sequential engine (default {d.proxy})")
    p.add_argument("--calib", default=c.data, help=f"calibration data (default {c.data})")
    p.add_argument("--nsamples", "--calib-samples", dest="nsamples", type=int, default=c.samples,
                   help=f"calibration windows (default {c.samples})")
    p.add_argument("--seqlen", "--calib-seqlen", dest="seqlen", type=int, default=c.seqlen,
                   help=f"tokens per calibration window (default {c.seqlen})")
    p.add_argument("--eval", "--eval-data", dest="eval", default=e.data,
                   help=f"fitness split, never a test split (default {e.data})")
    p.add_argument("--eval-windows", type=int, default=e.windows, help=f"fitness windows (default {e.windows})")
    p.add_argument("--eval-seqlen", type=int, default=e.seqlen, help=f"fitness window length (default {e.seqlen})")
    add_tasks(p, Evaluation())
    p.add_argument("--dtype", default=e.dtype, metavar="DTYPE",
                   help=f"compute dtype of the fitness (scoring pass, proxy pruning, perplexity): "
                        f"auto|float32|bfloat16|float16 (default {e.dtype}: float32, which the record explains; "
                        f"the best allocation is re-checked in float32)")
    p.add_argument("--quick", action="store_true", help="a smoke run: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.search import run as search

    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    settings = SearchSettings(method=args.method, sparsity=args.sparsity, budget=args.budget, seconds=args.seconds,
                              workers=args.workers, ray_address=args.ray_address, strategy=args.strategy,
                              lam=args.lam, population=args.population, children=args.children, proxy=args.proxy)
    record = search(args.model, settings,
                    calibration=Calibration(data=args.calib, samples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
                                            dtype=args.dtype),
                    evaluation=Evaluation(data=args.eval, seqlen=args.eval_seqlen, windows=args.eval_windows,
                                          dtype=args.dtype, **tasks_from(args)),
                    output=output_from(args))
    d = record.details
    res = d["result"]
    print(f"best function {d['function']}  fitness {d['fitness']:.4f} ({d['fitness_protocol']['data']} perplexity, "
          f"{res['evaluations']} evaluations, {res['generations']} generations, {res['seconds']:.1f} s)")
    base = d["baselines"]
    print(f"same proxy: uniform {base['uniform']:.4f}, OWL {base['owl']:.4f} (lower is better; "
          f"{d['precision']['dtype']}: {d['precision']['reason']})")
    if d.get("final_check"):
        print(f"float32 check of the best allocation: fitness {d['final_check']['fitness']:.4f}")
    for line in task_lines(record):
        print(line)
    best = f"{args.out.rstrip('/')}/best.json"
    print(f"prune with: kenprune prune --allocation {best}  (or --allocation 'dsa:{d['function']}')")
    write_report_quietly(args.out)
    return 0
