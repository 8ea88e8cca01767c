"""`kenprune recover`: LoRA fine-tuning of a pruned model, merged back into plain weights."""
from __future__ import annotations

import argparse

from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recover", help="recover a pruned model with LoRA (merged back into the weights)")
    p.add_argument("--model", required=True, help="pruned model folder (or any registry name / folder)")
    p.add_argument("--out", required=True, help="folder for the recovered model")
    p.add_argument("--data", default="lee", help="training text, CORPUS:SPLIT (default lee, e.g. wiki:calib)")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps (default 50)")
    p.add_argument("--seqlen", type=int, default=256, help="tokens per training window (default 256)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8; alpha 16, dropout 0.05)")
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", default="wiki:test", help="perplexity data before and after ('' to skip)")
    p.add_argument("--eval-seqlen", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=8, help="evaluation windows (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.structured import recover

    report = recover(args.model, args.out, data=args.data, steps=args.steps, seqlen=args.seqlen,
                     batch_size=args.batch_size, lr=args.lr, rank=args.rank, alpha=args.alpha,
                     dropout=args.dropout, seed=args.seed, eval=args.eval or None, eval_seqlen=args.eval_seqlen,
                     max_windows=args.max_windows)
    t, p = report["training"], report["perplexity"]
    print(f"LoRA {t['steps']} steps on {t['data']}: loss {t['loss_first_tenth']:.3f} -> {t['loss_last_tenth']:.3f}")
    if p["data"]:
        print(f"perplexity {p['data']}: {p['before']:.3f} -> {p['after']:.3f}")
    print(f"wrote {report['out']}")
    write_report_quietly(report["out"])
    return 0
