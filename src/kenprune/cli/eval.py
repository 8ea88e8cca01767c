"""`kenprune eval`: perplexity (causal LMs) or accuracy (classifiers) under a recorded protocol."""
from __future__ import annotations

import argparse

from ..jobs.eval import DEFAULT_EVALUATION as D
from ..settings import BOS_POLICIES, Evaluation
from .options import add_model, add_output, add_tasks, output_from, tasks_from


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="perplexity or accuracy of a model under a pinned protocol")
    add_model(p)
    p.add_argument("--data", default=None, help=f"CORPUS:SPLIT, text:PATH or hf:NAME (default {D.data}; with "
                                                 f"--tasks, none unless given)")
    p.add_argument("--seqlen", type=int, default=D.seqlen, help=f"tokens per window (default {D.seqlen})")
    p.add_argument("--max-windows", type=int, default=D.windows, help="evaluate only the first N windows "
                                                                       "(default: all)")
    p.add_argument("--bos", default=D.bos, choices=BOS_POLICIES, help=f"BOS handling (default {D.bos})")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help=f"windows per forward (default {D.batch_size})")
    add_tasks(p, flag="--tasks", limit_flag="--limit")
    p.add_argument("--dtype", default=D.dtype, help=f"compute dtype: float32|bfloat16|float16|auto (default {D.dtype}, "
                                                   f"the pinned protocol; another one is marked in the record)")
    add_output(p, what="run.json (default: print only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.eval import run as evaluate

    tasks = tasks_from(args)
    data = args.data or (None if tasks["tasks"] or tasks["task_dir"] else D.data)
    spec = Evaluation(data=data, seqlen=args.seqlen, windows=args.max_windows, bos=args.bos,
                      batch_size=args.batch_size, dtype=args.dtype, **tasks)
    record = evaluate(args.model, spec, output=output_from(args))
    print(summary(record))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def summary(record) -> str:
    from ..evaluate import TASK_METRIC, ZERO_SHOT
    from ..evaluate.zero_shot import summary_lines

    tasks = summary_lines(record)
    rest = [q for q in record.quality if q.metric not in (ZERO_SHOT, TASK_METRIC)]
    if not rest:
        return "\n".join(tasks)
    q = rest[0]
    p = q.protocol
    if tasks:
        return "\n".join([_one(q, p)] + tasks)
    return _one(q, p)


def _one(q, p) -> str:
    if q.metric == "perplexity":
        return (f"perplexity {q.value:.4f}  ({p['data']}, {p['windows']} windows x {p['seqlen']} tokens, "
                f"{p['predicted_tokens']} predicted, BOS {p['bos_token_id']}, {p.get('dtype', 'float32')}, "
                f"{q.seconds:.1f} s)")
    return f"accuracy {q.value:.4f}  ({p['correct']}/{p['total']} on {p['data']}, {q.seconds:.1f} s)"
