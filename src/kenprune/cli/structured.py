"""`kenprune structured`: remove whole attention heads and MLP channels (LLM-Pruner) into a smaller dense model."""
from __future__ import annotations

import argparse

from ..settings import STRUCTURED_CALIBRATION, STRUCTURED_EVALUATION, StructuredSettings
from .options import add_calibration, add_evaluation, add_model, add_output, add_tasks, calibration_from, \
    evaluation_from, output_from, task_lines
from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    d = StructuredSettings()
    p = subparsers.add_parser("structured", help="remove whole heads and MLP channels: a smaller dense model")
    add_model(p)
    p.add_argument("--importance", default=d.importance,
                   help="l1, l2, taylor (default: sum |W*grad|, LLM-Pruner's), second-order, vector or random")
    p.add_argument("--ratio", type=float, default=d.ratio,
                   help=f"fraction of heads/channels removed per pruned block, in [0, 1) (default {d.ratio})")
    p.add_argument("--keep-first", type=int, default=d.keep_first, help="leave the first N blocks untouched")
    p.add_argument("--keep-last", type=int, default=d.keep_last, help="leave the last N blocks untouched")
    p.add_argument("--round-to", type=int, default=d.round_to,
                   help=f"MLP widths rounded to a multiple of this (default {d.round_to})")
    p.add_argument("--global-ranking", action="store_true", help="rank units across blocks (widths differ by block)")
    p.add_argument("--attention-unit", default=d.attention_unit,
                   help="auto, query or kv: remove query heads evenly per key/value group (query) or whole "
                        "key/value groups (kv)")
    p.add_argument("--blocks-per-pass", type=int, default=d.blocks_per_pass,
                   help="hold gradients for only N blocks at a time (less memory, more passes)")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="skip the measured latency comparison")
    p.add_argument("--latency-repeats", type=int, default=d.latency_repeats,
                   help=f"timed repeats per measurement (median; default {d.latency_repeats})")
    add_calibration(p, STRUCTURED_CALIBRATION, batch=False)
    add_evaluation(p, STRUCTURED_EVALUATION)
    add_tasks(p)
    add_output(p, required=True, what="the pruned HF model and run.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.structured import run as structured

    settings = StructuredSettings(importance=args.importance, ratio=args.ratio, keep_first=args.keep_first,
                                  keep_last=args.keep_last, round_to=args.round_to,
                                  global_ranking=args.global_ranking, attention_unit=args.attention_unit,
                                  blocks_per_pass=args.blocks_per_pass, latency=args.latency,
                                  latency_repeats=args.latency_repeats)
    record = structured(args.model, settings, calibration=calibration_from(args), evaluation=evaluation_from(args),
                        output=output_from(args))
    print(summary(record, args.out))
    write_report_quietly(args.out)
    return 0


def summary(record, out) -> str:
    d = record.details
    size = record.file("model").bytes
    lines = [f"structured {d['importance']} ratio {d['plan']['ratio']}: parameters "
             f"{d['parameters_before'] / 1e6:.2f}M -> {d['parameters_after'] / 1e6:.2f}M "
             f"(blocks -{100 * d['block_parameters_removed']:.1f}%), "
             f"{'uniform widths' if d['uniform_widths'] else 'per-block widths'}, {size / 2**20:.1f} MiB on disk"]
    if "latency" in d:
        s, rounds = d["latency"]["speedup"], d["latency"]["dense"]["repeats"]
        lines.append(f"speed-up: prefill {s['prefill_measured']:.2f}x (ideal {s['prefill_ideal']:.2f}x), "
                     f"decode {s['decode_measured']:.2f}x (ideal {s['decode_ideal']:.2f}x), median of {rounds} "
                     f"alternating rounds")
        lines += [f"warning: {flag}" for flag in d["latency"].get("flags", [])]
    before, after = record.quality_of("before"), record.quality_of("after")
    if after is not None:
        lines.append(f"{after.metric} {after.data}: " + (f"dense {before.value:.3f} -> " if before else "")
                     + f"pruned {after.value:.3f}")
    lines += task_lines(record)
    lines.append(f"wrote {out}")
    return "\n".join(lines)
