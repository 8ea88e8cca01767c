"""`kenprune finetune`: fine-tune a model (classifier or causal LM) to make KEN's (pre-trained, fine-tuned) pair."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a model on a corpus (classifier or causal-LM adaptation)")
    p.add_argument("--model", default="minilm-l6", help="registry name or folder (default minilm-l6)")
    p.add_argument("--data", default="pang-lee", help="CORPUS[:SPLIT]; labelled corpora train a classifier, "
                                                        "text corpora adapt a causal LM (default pang-lee, split calib)")
    p.add_argument("--out", required=True, help="output folder (HF model + kenprune.json [+ initial/])")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=4.0, help="passes over the training split (default 4)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-4 classifier, 3e-5 LM)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=128, help="max tokens per example / window (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-windows", type=int, default=8, help="held-out perplexity windows (causal LM)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.finetune import finetune

    rec = finetune(args.model, args.data, out=args.out, steps=args.steps, epochs=args.epochs, lr=args.lr,
                   batch_size=args.batch_size, seqlen=args.seqlen, seed=args.seed, eval_windows=args.eval_windows)
    before, after = rec["metrics"]["before"], rec["metrics"]["after"]
    print(f"{before['metric']} on {before['data']}: {before['value']:.4f} before, {after['value']:.4f} after "
          f"{rec['steps']} steps ({rec['train_seconds']:.1f} s, loss {rec['loss']['first']:.3f} -> {rec['loss']['last']:.3f})")
    print(f"wrote {args.out}")
    return 0
