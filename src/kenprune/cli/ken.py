"""`kenprune ken`: KEN on a (pre-trained, fine-tuned) pair; `kenprune ken apply`: rebuild from base + file."""
from __future__ import annotations

import argparse

from ..ken.selections import ROW_SELECTIONS
from ..settings import KEN_EVALUATION, KEN_TENSORS, KEN_VALUE_DTYPES, KenLoraSettings, KenSettings
from .options import add_evaluation, add_output, evaluation_from, output_from
from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    d = KenSettings()
    p = subparsers.add_parser("ken", help="KEN: keep k fine-tuned values per row (kernel density), store a subnetwork",
                              description="KEN keeps, in every row of every selected tensor, k fine-tuned values "
                                          "chosen through a kernel density estimate, resets the rest to the "
                                          "pre-trained values, and stores only the kept subnetwork.")
    p.add_argument("--pretrained", default=None, help="pre-trained model (default: recorded by kenprune finetune; "
                                                      "for a classifier FT/initial)")
    p.add_argument("--finetuned", default=None, help="fine-tuned model folder (or its run folder)")
    p.add_argument("--k", default=d.k, help=f"kept values per row: a count (300), fraction (0.25) or 25%% "
                                            f"(default {d.k})")
    add_output(p, what="subnetwork.safetensors, run.json [, model/]")
    p.add_argument("--kernel", default=d.kernel, help=f"gaussian (default), epanechnikov, tophat, exponential, "
                                                      f"linear, cosine")
    p.add_argument("--tensors", default=d.tensors, choices=KEN_TENSORS,
                   help="all parameter tensors (default, as the paper) or transformer blocks only")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only tensors matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip tensors matching (repeatable)")
    p.add_argument("--dtype", default=d.value_dtype, choices=KEN_VALUE_DTYPES,
                   help=f"stored value precision (default {d.value_dtype})")
    p.add_argument("--selection", default=d.selection, choices=ROW_SELECTIONS.names(),
                   help=f"which k entries per row keep their fine-tuned value: " +
                        "; ".join(f"{e.name}: {e.help}" for e in ROW_SELECTIONS.entries()) +
                        f" (default {d.selection})")
    p.add_argument("--select-on", default=d.select_on, choices=("finetuned", "delta"),
                   help=f"KEN's kernel density on each row's fine-tuned values (the paper) or on its deltas "
                        f"fine-tuned - pre-trained (default {d.select_on})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of the random selections (default {d.seed})")
    p.add_argument("--allocation", default=d.allocation, metavar="SPEC",
                   help="spread a fractional k over the tensors with an allocator scored by |fine-tuned - "
                        "pre-trained|: global (more k where the changes are larger), owl, er, ... "
                        "(default: the same k in every row, as the paper)")
    p.add_argument("--save-model", action="store_true", help="also write the full optimized model to OUT/model")
    add_evaluation(p, KEN_EVALUATION, before=False)
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="ken_command", metavar="apply|lora")
    a = sub.add_parser("apply", help="rebuild the optimized model from its base and a subnetwork file")
    a.add_argument("--base", required=True, help="the base model the subnetwork was made from")
    a.add_argument("--subnetwork", required=True, help="subnetwork.safetensors written by kenprune ken")
    a.add_argument("--out", required=True, dest="apply_out", help="output model folder")
    a.add_argument("--overwrite", action="store_true", dest="apply_overwrite",
                   help="replace an existing output folder that kenprune wrote (after the new one is complete)")
    a.set_defaults(func=run_apply)
    _register_lora(sub)


def _register_lora(sub: argparse._SubParsersAction) -> None:
    d = KenLoraSettings()
    p = sub.add_parser("lora", help="the paper's PEFT comparison: LoRA with as many stored bytes as a KEN subnetwork",
                       description="Train a LoRA adapter on the fine-tune's own data, steps and batches (read from "
                                   "the fine-tuned folder's record), from KEN's base, with the largest rank whose "
                                   "adapter file fits the budget; evaluate it beside the pre-trained and fine-tuned "
                                   "models as `kenprune ken` does.")
    p.add_argument("--finetuned", required=True, help="fine-tuned model folder written by kenprune finetune")
    p.add_argument("--pretrained", default=None, help="KEN's base (default: recorded by kenprune finetune)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--match", default=d.match, metavar="KEN_RUN",
                        help="size the adapter to this KEN run's subnetwork file (the run folder or the file)")
    budget.add_argument("--bytes", type=int, default=d.bytes, help="size the adapter to this many bytes")
    budget.add_argument("--rank", type=int, default=d.rank, help="a fixed rank instead of a byte budget")
    p.add_argument("--targets", default=",".join(d.targets), metavar="NAMES",
                   help="comma-separated Linear names to adapt (default: every Linear in the transformer blocks)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--save-model", action="store_true", help="also write the merged model to OUT/model")
    add_output(p, what="adapter/, run.json [, model/]")
    add_evaluation(p, KEN_EVALUATION, before=False)
    p.set_defaults(func=run_lora)


def run_lora(args: argparse.Namespace) -> int:
    from ..jobs.ken_lora import run as lora

    settings = KenLoraSettings(match=args.match, bytes=args.bytes, rank=args.rank,
                               targets=tuple(t for t in args.targets.split(",") if t), lr=args.lr,
                               save_model=args.save_model)
    record = lora(args.finetuned, settings, pretrained=args.pretrained, evaluation=evaluation_from(args),
                  output=output_from(args))
    d = record.details
    budget = "" if d["budget_bytes"] is None else f" for a budget of {d['budget_bytes'] / 2**20:.2f} MiB"
    print(f"LoRA rank {d['rank']} on {len(d['targets'])} module names: adapter {d['adapter_bytes'] / 2**20:.2f} MiB"
          f"{budget}; {d['steps']} steps on {d['finetune']['data']}, loss {d['loss_first']:.3f} -> {d['loss_last']:.3f}")
    after = record.quality_of("after")
    if after is not None:
        refs = {q.model: q.value for q in record.quality if q.role == "reference"}
        print(f"{after.metric} on {after.data}: " + ", ".join(f"{k} {v:.4f}" for k, v in refs.items())
              + f", {after.model} {after.value:.4f}")
    print(f"wrote {args.out}")
    write_report_quietly(args.out)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..errors import KenpruneError
    from ..jobs.ken import run as ken

    if not args.finetuned or not args.out:
        raise KenpruneError("kenprune ken needs --finetuned FOLDER and --out DIR (or: kenprune ken apply ...)")
    settings = KenSettings(k=args.k, kernel=args.kernel, tensors=args.tensors, include=args.include,
                           exclude=args.exclude, value_dtype=args.dtype, save_model=args.save_model,
                           selection=args.selection, select_on=args.select_on, seed=args.seed,
                           allocation=args.allocation)
    record = ken(args.finetuned, settings, pretrained=args.pretrained, evaluation=evaluation_from(args),
                 output=output_from(args))
    print(summary(record))
    print(f"wrote {args.out}")
    write_report_quietly(args.out)
    return 0


def summary(record) -> str:
    d = record.details
    tot, sizes = d["totals"], d["sizes"]
    method = d.get("method", "ken")
    name = f"KEN k={d['k']} ({d['kernel']})" if method == "ken" else f"{method} k={d['k']}"
    if d.get("allocation"):
        name += f", allocated by {d['allocation']['spec']} over |delta|"
    lines = [f"{name}: kept {tot['kept']:,} of {tot['selected_parameters']:,} selected "
             f"values ({tot['kept_fraction_of_selected']:.1%}); stored {tot['stored_fraction']:.1%} of "
             f"{tot['parameters']:,} parameters; {sum(record.seconds().values()):.1f} s",
             f"subnetwork {sizes['subnetwork_bytes'] / 2**20:.2f} MiB vs fine-tuned safetensors "
             f"{sizes['finetuned_safetensors_bytes'] / 2**20:.2f} MiB ({sizes['ratio']:.1%})"]
    if d["clipped_tensors"]:
        lines.append(f"note: k exceeds the row length of {len(d['clipped_tensors'])} tensors; they keep every entry")
    after = record.quality_of("after")
    if after is not None:
        refs = {q.model: q.value for q in record.quality if q.role == "reference"}
        lines.append(f"{after.metric} on {after.data}: " + ", ".join(f"{k} {v:.4f}" for k, v in refs.items())
                     + f", {after.model} {after.value:.4f}")
    return "\n".join(lines)


def run_apply(args: argparse.Namespace) -> int:
    from ..jobs.ken import apply

    record = apply(args.base, args.subnetwork, args.apply_out, overwrite=args.apply_overwrite)
    print(f"rebuilt the optimized model (weights sha256 {record.details['optimized_sha256'][:12]}, matches the file) "
          f"in {sum(record.seconds().values()):.1f} s")
    print(f"wrote {args.apply_out}")
    return 0
