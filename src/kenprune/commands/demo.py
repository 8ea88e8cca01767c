"""`kenprune demo`: the README's first command, a short tour on the embedded real models."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="a few-minute tour on the embedded models (writes to ./kenprune-demo)")
    p.add_argument("--out", default="kenprune-demo", help="folder for the demo's results")
    p.add_argument("--windows", type=int, default=8, help="evaluation windows per perplexity (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import evaluate_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("== 1. dense smollm2-135m on wiki:test (pinned protocol) ==")
    result = evaluate_model("smollm2-135m", "wiki:test", seqlen=512, max_windows=args.windows,
                            out=out / "eval-dense.json")
    proto = result["protocol"]
    print(f"perplexity {result['perplexity']:.3f} over {proto['predicted_tokens']} predicted tokens "
          f"({proto['windows']} x {proto['seqlen']}), {result['tokens_per_second']:.0f} tokens/s")
    print(f"\nresults in {out.resolve()}")
    return 0
