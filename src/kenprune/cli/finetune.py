"""`kenprune finetune`: fine-tune a model (classifier or causal LM) to make KEN's (pre-trained, fine-tuned) pair."""
from __future__ import annotations

import argparse

from ..settings import DEFAULT_ENCODER, FINETUNE_EVALUATION, Evaluation, FinetuneSettings
from .options import add_model, add_output, output_from


def register(subparsers: argparse._SubParsersAction) -> None:
    d = FinetuneSettings()
    p = subparsers.add_parser("finetune", help="fine-tune a model on a corpus (classifier or causal-LM adaptation)")
    add_model(p, DEFAULT_ENCODER)
    p.add_argument("--data", default=d.data, help=f"CORPUS[:SPLIT]; labelled corpora train a classifier, text "
                                                  f"corpora adapt a causal LM (default {d.data}, split calib)")
    add_output(p, required=True, what="the fine-tuned HF model, run.json [, initial/]")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=d.epochs, help=f"passes over the training split (default {d.epochs:g})")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (default 1e-4 classifier, 3e-5 LM)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"examples per step (default {d.batch_size})")
    p.add_argument("--seqlen", type=int, default=d.seqlen, help=f"max tokens per example / window (default {d.seqlen})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"data order and head initialisation (default {d.seed})")
    p.add_argument("--eval-seqlen", type=int, default=FINETUNE_EVALUATION.seqlen,
                   help=f"held-out perplexity window (causal LM; default {FINETUNE_EVALUATION.seqlen})")
    p.add_argument("--eval-windows", type=int, default=FINETUNE_EVALUATION.windows,
                   help=f"held-out perplexity windows (causal LM; default {FINETUNE_EVALUATION.windows})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.finetune import run as finetune

    settings = FinetuneSettings(data=args.data, steps=args.steps, epochs=args.epochs, lr=args.lr,
                                batch_size=args.batch_size, seqlen=args.seqlen, seed=args.seed)
    record = finetune(args.model, settings, evaluation=Evaluation(seqlen=args.eval_seqlen, windows=args.eval_windows),
                      output=output_from(args))
    before, after = record.quality_of("before"), record.quality_of("after")
    d = record.details
    print(f"{before.metric} on {before.data}: {before.value:.4f} before, {after.value:.4f} after {d['steps']} steps "
          f"({d['train_seconds']:.1f} s, loss {d['loss']['first']:.3f} -> {d['loss']['last']:.3f})")
    print(f"wrote {args.out}")
    return 0
