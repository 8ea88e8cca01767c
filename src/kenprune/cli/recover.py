"""`kenprune recover`: LoRA fine-tuning of a pruned model, merged back into plain weights."""
from __future__ import annotations

import argparse

from ..settings import RECOVER_EVALUATION, LoraSettings
from .options import add_evaluation, add_model, add_output, add_tasks, evaluation_from, output_from, print_tasks
from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    d = LoraSettings()
    p = subparsers.add_parser("recover", help="recover a pruned model with LoRA (merged back into the weights)")
    add_model(p, required=True, help="pruned model folder or run folder (or any registry name / folder)")
    add_output(p, required=True, what="the recovered HF model and run.json")
    p.add_argument("--data", default=d.data, help=f"training text, CORPUS:SPLIT (default {d.data}, e.g. wiki:calib)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--seqlen", type=int, default=d.seqlen, help=f"tokens per training window (default {d.seqlen})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"windows per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default {d.rank})")
    p.add_argument("--alpha", type=int, default=d.alpha, help=f"LoRA alpha (default {d.alpha})")
    p.add_argument("--dropout", type=float, default=d.dropout, help=f"LoRA dropout (default {d.dropout})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"window order and LoRA init (default {d.seed})")
    add_evaluation(p, RECOVER_EVALUATION)
    add_tasks(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.recover import run as recover

    settings = LoraSettings(data=args.data, steps=args.steps, seqlen=args.seqlen, batch_size=args.batch_size,
                            lr=args.lr, rank=args.rank, alpha=args.alpha, dropout=args.dropout, seed=args.seed)
    record = recover(args.model, settings, evaluation=evaluation_from(args), output=output_from(args))
    t = record.details["training"]
    print(f"LoRA {t['steps']} steps on {t['data']}: loss {t['loss_first_tenth']:.3f} -> {t['loss_last_tenth']:.3f}")
    before, after = record.quality_of("before"), record.quality_of("after")
    if after is not None:
        print(f"{after.metric} {after.data}: " + (f"{before.value:.3f} -> " if before else "") + f"{after.value:.3f}")
    print_tasks(record)
    print(f"wrote {args.out}")
    write_report_quietly(args.out)
    return 0
