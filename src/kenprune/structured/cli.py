"""CLI glue for `kenprune prune --method structured` (the `prune` command owns --model, --out, --calib,
--nsamples, --seqlen, --seed, --eval, --method; this module adds the structured options and runs)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("structured pruning (--method structured)")
    g.add_argument("--importance", default="taylor",
                   help="l1, l2, taylor (default: sum |W*grad|, LLM-Pruner's), second-order, vector or random")
    g.add_argument("--ratio", type=float, default=0.2, help="fraction of heads/channels removed per pruned block, in [0, 1)")
    g.add_argument("--keep-first", type=int, default=0, help="leave the first N blocks untouched")
    g.add_argument("--keep-last", type=int, default=0, help="leave the last N blocks untouched")
    g.add_argument("--round-to", type=int, default=8, help="MLP widths rounded to a multiple of this (default 8)")
    g.add_argument("--global-ranking", action="store_true", help="rank units across blocks (widths differ by block)")
    g.add_argument("--attention-unit", default="auto",
                   help="auto, query or kv: remove query heads evenly per key/value group (query) or whole key/value groups (kv)")
    g.add_argument("--blocks-per-pass", type=int, default=None,
                   help="hold gradients for only N blocks at a time (less memory, more passes)")
    g.add_argument("--no-latency", action="store_true", help="skip the measured latency comparison")
    g.add_argument("--latency-repeats", type=int, default=5, help="timed repeats per measurement (median; default 5)")


def run(args: argparse.Namespace) -> int:
    from ..jobs.structured import structured_prune

    report = structured_prune(
        args.model, args.out, importance=args.importance, ratio=args.ratio, keep_first=args.keep_first,
        keep_last=args.keep_last, round_to=args.round_to, global_ranking=args.global_ranking,
        attention_unit=args.attention_unit, calib=args.calib, nsamples=args.nsamples, seqlen=args.seqlen,
        seed=args.seed, blocks_per_pass=args.blocks_per_pass, eval=getattr(args, "eval", None),
        eval_seqlen=getattr(args, "eval_seqlen", None) or args.seqlen,
        max_windows=getattr(args, "eval_windows", None) or 8,
        latency=not args.no_latency, latency_repeats=args.latency_repeats,
        progress=not getattr(args, "quiet", False))
    print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    lines = [f"structured {report['importance']} ratio {report['plan']['ratio']}: parameters "
             f"{report['parameters_before'] / 1e6:.2f}M -> {report['parameters_after'] / 1e6:.2f}M "
             f"(blocks -{100 * report['block_parameters_removed']:.1f}%), "
             f"{'uniform widths' if report['uniform_widths'] else 'per-block widths'}, "
             f"{report['file_bytes'] / 2**20:.1f} MiB on disk"]
    if "latency" in report:
        s = report["latency"]["speedup"]
        lines.append(f"speed-up: prefill {s['prefill_measured']:.2f}x (ideal {s['prefill_ideal']:.2f}x), "
                     f"decode {s['decode_measured']:.2f}x (ideal {s['decode_ideal']:.2f}x)")
    if "perplexity" in report:
        p = report["perplexity"]
        lines.append(f"perplexity {p['data']}: dense {p['dense']:.3f} -> pruned {p['pruned']:.3f}")
    lines.append(f"wrote {report['out']}")
    return "\n".join(lines)
