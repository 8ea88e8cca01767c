"""`kenprune models` and `kenprune data`: list the registries."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the embedded models")
    p.set_defaults(func=run_models)
    p = subparsers.add_parser("data", help="list the embedded corpora and their splits")
    p.add_argument("--tokenizer", default=None, metavar="MODEL",
                   help="also count each split's tokens with this model's tokenizer (e.g. smollm2-135m)")
    p.set_defaults(func=run_data)


def run_models(args: argparse.Namespace) -> int:
    from .. import provenance
    from ..models.loading import MODELS

    print(f"{'name':<14} {'task':<24} description")
    for entry in MODELS.entries():
        spec = entry.value
        print(f"{spec.name:<14} {spec.task:<24} {spec.description}")
        if spec.optional:
            print(f"{'':<14} {'':<24} optional: {spec.install}")
    print("\nAny local Hugging Face folder or hub id (org/name) works too.")
    print(f"Conversions are cached in {provenance.cache_root()} "
          "($KENPRUNE_CACHE, else $XDG_CACHE_HOME/kenprune, else ~/.cache/kenprune).")
    return 0


def run_data(args: argparse.Namespace) -> int:
    from ..data.corpora import CORPORA, SPLITS, join_text, load_documents

    tokenizer = None
    if args.tokenizer:
        from ..models.loading import load_model

        tokenizer = load_model(args.tokenizer).tokenizer
    header = f"{'corpus':<16} {'split':<6} {'docs':>5} {'words':>8}" + (f" {'tokens':>8}" if tokenizer else "")
    print(header)
    from ..errors import KenpruneError

    for entry in CORPORA.entries():
        try:
            CORPORA.get(entry.name).load()
        except KenpruneError as exc:  # a corpus fetched on first use (Debian books) may be unavailable here
            print(f"{entry.name:<16} unavailable: {exc}")
            continue
        for split in SPLITS:
            docs = load_documents(f"{entry.name}:{split}")
            text = join_text(docs)
            line = f"{entry.name:<16} {split:<6} {len(docs):>5} {len(text.split()):>8}"
            if tokenizer is not None:
                line += f" {len(tokenizer(text, add_special_tokens=False)['input_ids']):>8}"
            print(line)
    print("\nAlso: text:PATH (a file or folder of your own) and hf:NAME[:CONFIG][@SPLIT] (needs internet).")
    return 0
