"""`kenprune ken`: KEN on a (pre-trained, fine-tuned) pair; `kenprune ken apply`: rebuild from base + file."""
from __future__ import annotations

import argparse

from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..ken import SELECTIONS

    p = subparsers.add_parser("ken", help="KEN: keep k fine-tuned values per row (kernel density), store a subnetwork",
                              description="KEN keeps, in every row of every selected tensor, k fine-tuned values "
                                          "chosen through a kernel density estimate, resets the rest to the "
                                          "pre-trained values, and stores only the kept subnetwork.")
    p.add_argument("--pretrained", default=None, help="pre-trained model (default: recorded by kenprune finetune; "
                                                      "for a classifier FT/initial)")
    p.add_argument("--finetuned", default=None, help="fine-tuned model folder")
    p.add_argument("--k", default="0.25", help="kept values per row: a count (300), fraction (0.25) or 25%% "
                                               "(default 0.25)")
    p.add_argument("--out", default=None, help="output folder: subnetwork.safetensors, ken.json [, model/]")
    p.add_argument("--kernel", default="gaussian", help="gaussian (default), epanechnikov, tophat, exponential, "
                                                        "linear, cosine")
    p.add_argument("--tensors", default="all", choices=SELECTIONS,
                   help="all parameter tensors (default, as the paper) or transformer blocks only")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only tensors matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip tensors matching (repeatable)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="stored value precision")
    p.add_argument("--save-model", action="store_true", help="also write the full optimized model to OUT/model")
    p.add_argument("--eval", default=None, metavar="SPLIT", help="evaluate the optimized model, e.g. pang-lee:test")
    p.add_argument("--eval-windows", type=int, default=8, help="perplexity windows for --eval (causal LM)")
    p.add_argument("--seqlen", type=int, default=256, help="perplexity window length for --eval (causal LM)")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="ken_command", metavar="apply")
    a = sub.add_parser("apply", help="rebuild the optimized model from its base and a subnetwork file")
    a.add_argument("--base", required=True, help="the base model the subnetwork was made from")
    a.add_argument("--subnetwork", required=True, help="subnetwork.safetensors written by kenprune ken")
    a.add_argument("--out", required=True, dest="apply_out", help="output model folder")
    a.set_defaults(func=run_apply)


def run(args: argparse.Namespace) -> int:
    from ..errors import KenpruneError
    from ..ken.api import ken_prune

    if not args.finetuned or not args.out:
        raise KenpruneError("kenprune ken needs --finetuned FOLDER and --out DIR (or: kenprune ken apply ...)")
    res = ken_prune(args.pretrained, args.finetuned, args.k, out=args.out, kernel=args.kernel, tensors=args.tensors,
                    include=args.include, exclude=args.exclude, value_dtype=args.dtype, save_model=args.save_model,
                    eval=args.eval, eval_windows=args.eval_windows, seqlen=args.seqlen)
    tot, sizes = res["totals"], res["sizes"]
    print(f"KEN k={res['k']} ({res['kernel']}): kept {tot['kept']:,} of {tot['selected_parameters']:,} selected "
          f"values ({tot['kept_fraction_of_selected']:.1%}); stored {tot['stored_fraction']:.1%} of "
          f"{tot['parameters']:,} parameters; {sum(res['seconds'].values()):.1f} s")
    print(f"subnetwork {sizes['subnetwork_bytes'] / 2**20:.2f} MiB vs fine-tuned safetensors "
          f"{sizes['finetuned_safetensors_bytes'] / 2**20:.2f} MiB ({sizes['ratio']:.1%})")
    if res["clipped_tensors"]:
        print(f"note: k exceeds the row length of {len(res['clipped_tensors'])} tensors; they keep every entry")
    if "eval" in res:
        ev = res["eval"]
        print(f"optimized model {ev['metric']} on {ev['data']}: {ev['value']:.4f}")
    print(f"wrote {args.out}")
    write_report_quietly(args.out)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from ..ken.api import ken_apply

    res = ken_apply(args.base, args.subnetwork, args.apply_out)
    print(f"rebuilt the optimized model (weights sha256 {res['optimized_sha256'][:12]}, matches the file) "
          f"in {res['seconds']:.1f} s")
    print(f"wrote {args.apply_out}")
    return 0
