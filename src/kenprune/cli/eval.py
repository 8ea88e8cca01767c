"""`kenprune eval`: perplexity (causal LMs) or accuracy (classifiers) under a recorded protocol."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="perplexity or accuracy of a model under a pinned protocol")
    p.add_argument("--model", default="smollm2-135m", help="registry name, local folder or hub id")
    p.add_argument("--data", default="wiki:test", help="CORPUS:SPLIT, text:PATH or hf:NAME (default wiki:test)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--max-windows", type=int, default=None, help="evaluate only the first N windows")
    p.add_argument("--bos", default="auto", choices=["auto", "prepend", "none"], help="BOS handling")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON result path (default: eval-<model>-<data>.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.eval import evaluate_model

    out = args.out or f"eval-{_slug(args.model)}-{_slug(args.data)}.json"
    result = evaluate_model(args.model, args.data, seqlen=args.seqlen, max_windows=args.max_windows,
                            bos=args.bos, batch_size=args.batch_size, out=out)
    if result["metric"] == "perplexity":
        proto = result["protocol"]
        print(f"perplexity {result['perplexity']:.4f}  ({proto['data']}, {proto['windows']} windows x "
              f"{proto['seqlen']} tokens, {proto['predicted_tokens']} predicted, BOS {proto['bos_token_id']}, "
              f"{result['seconds']:.1f} s)")
    else:
        print(f"accuracy {result['accuracy']:.4f}  ({result['correct']}/{result['total']} on "
              f"{result['protocol']['data']}, {result['seconds']:.1f} s)")
    print(f"wrote {out}")
    return 0


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-")[-60:]

