"""`kenprune eval`: perplexity (causal LMs) or accuracy (classifiers) under a recorded protocol."""
from __future__ import annotations

import argparse

from ..jobs.eval import DEFAULT_EVALUATION as D
from ..settings import BOS_POLICIES, Evaluation
from .options import add_model, add_output, output_from


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="perplexity or accuracy of a model under a pinned protocol")
    add_model(p)
    p.add_argument("--data", default=D.data, help=f"CORPUS:SPLIT, text:PATH or hf:NAME (default {D.data})")
    p.add_argument("--seqlen", type=int, default=D.seqlen, help=f"tokens per window (default {D.seqlen})")
    p.add_argument("--max-windows", type=int, default=D.windows, help="evaluate only the first N windows "
                                                                       "(default: all)")
    p.add_argument("--bos", default=D.bos, choices=BOS_POLICIES, help=f"BOS handling (default {D.bos})")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help=f"windows per forward (default {D.batch_size})")
    p.add_argument("--dtype", default=D.dtype, help=f"compute dtype: float32|bfloat16|float16|auto (default {D.dtype}, "
                                                   f"the pinned protocol; another one is marked in the record)")
    add_output(p, what="run.json (default: print only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.eval import run as evaluate

    spec = Evaluation(data=args.data, seqlen=args.seqlen, windows=args.max_windows, bos=args.bos,
                      batch_size=args.batch_size, dtype=args.dtype)
    record = evaluate(args.model, spec, output=output_from(args))
    print(summary(record))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def summary(record) -> str:
    q = record.quality[0]
    p = q.protocol
    if q.metric == "perplexity":
        return (f"perplexity {q.value:.4f}  ({p['data']}, {p['windows']} windows x {p['seqlen']} tokens, "
                f"{p['predicted_tokens']} predicted, BOS {p['bos_token_id']}, {p.get('dtype', 'float32')}, "
                f"{q.seconds:.1f} s)")
    return f"accuracy {q.value:.4f}  ({p['correct']}/{p['total']} on {p['data']}, {q.seconds:.1f} s)"
