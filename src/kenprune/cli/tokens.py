"""`kenprune tokens`: token pruning at inference (Zero-TPrune, ToMe, truncation, random, [CLS] attention)."""
from __future__ import annotations

import argparse

from ..settings import DEFAULT_ENCODER, TOKEN_WPR_STARTS, TokenSettings
from .options import add_model, add_output, output_from
from .report import write_report_quietly


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..tokens import TOKEN_METHODS

    d = TokenSettings()
    p = subparsers.add_parser("tokens", help="prune tokens at inference (Zero-TPrune, ToMe, baselines) and measure "
                                             "fidelity, tokens per layer and speed against dense")
    add_model(p, DEFAULT_ENCODER, help="encoder or sequence classifier: registry name, folder, run folder (e.g. a "
                                       "kenprune finetune run) or hub id; BERT family or ViT")
    p.add_argument("--method", default=d.method, choices=TOKEN_METHODS.names(),
                   help=f"token pruning method (default {d.method})")
    p.add_argument("--keep", type=float, default=d.keep,
                   help="share of each input's tokens left from the middle layer on, pruned evenly over layers "
                        "1..L/2 (default 0.6 when no --schedule)")
    p.add_argument("--schedule", default=d.schedule,
                   help="cumulative keep ratio per layer instead of --keep: 0.9,0.75,0.6 (layers 1, 2, 3) or "
                        "1:0.9,3:0.6, or flops:0.7 as --flops (default: from --keep)")
    p.add_argument("--flops", type=float, default=d.flops,
                   help="FLOPs target instead of --keep/--schedule: the pruned encoder costs this share of the dense "
                        "encoder's FLOPs at each input's length, e.g. 0.7 (default: none, --keep decides)")
    add_output(p, what="run.json with fidelity, tokens per layer, latency and traced examples")
    g = p.add_argument_group("Zero-TPrune")
    g.add_argument("--wpr-start", default=d.wpr_start, choices=TOKEN_WPR_STARTS,
                   help="WPR start: cls gives [CLS] sqrt(N) times the others' weight; auto: cls for [CLS]-pooled "
                        f"models (classifiers, ViT), uniform for mean-pooled encoders (default {d.wpr_start})")
    g.add_argument("--similarity-share", type=float, default=d.similarity_share,
                   help=f"share of a layer's removals made by the similarity stage (default {d.similarity_share})")
    g.add_argument("--vhf-min", type=float, default=d.vhf_min,
                   help=f"variance head filter: lowest kept head variance (default {d.vhf_min})")
    g.add_argument("--vhf-max", type=float, default=d.vhf_max,
                   help=f"variance head filter: highest kept head variance (default {d.vhf_max})")
    m = p.add_argument_group("measurement")
    m.add_argument("--data", default=d.data, help=f"CORPUS:SPLIT: paragraphs for an encoder, a labelled split for "
                                                  f"a classifier (default {d.data})")
    m.add_argument("--texts", type=int, default=d.texts, help=f"texts measured (default {d.texts})")
    m.add_argument("--seqlen", type=int, default=d.seqlen, help=f"tokens per text at most (default {d.seqlen})")
    m.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"texts per forward, also the latency batch (default {d.batch_size})")
    m.add_argument("--examples", type=int, default=d.examples,
                   help=f"inputs traced layer by layer for the report (default {d.examples})")
    m.add_argument("--latency-repeats", type=int, default=d.latency_repeats,
                   help=f"dense/pruned timing rounds, alternated (default {d.latency_repeats})")
    m.add_argument("--seed", type=int, default=d.seed, help=f"the random baseline's seed (default {d.seed})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.tokens import run as tokens

    settings = TokenSettings(method=args.method, keep=args.keep, schedule=args.schedule, flops=args.flops,
                             wpr_start=args.wpr_start,
                             similarity_share=args.similarity_share, vhf_min=args.vhf_min, vhf_max=args.vhf_max,
                             data=args.data, texts=args.texts, seqlen=args.seqlen, batch_size=args.batch_size,
                             examples=args.examples, latency_repeats=args.latency_repeats, seed=args.seed)
    record = tokens(args.model, settings, output=output_from(args))
    d = record.details
    after = record.quality_of("after")
    counts = " -> ".join(f"{x['tokens_out']:.1f}" for x in d["tokens_per_layer"])
    lat = d["latency"]
    print(f"{d['method']} (schedule {d['schedule_text']}): {after.metric} {after.value:.4f} on {after.data}; "
          f"tokens per layer {counts}")
    print(f"FLOPs {d['flops']['ratio']:.3f}x dense; latency (batch {lat['batch']}, {lat['threads']} threads) dense "
          f"{lat['dense']['median'] * 1e3:.1f} ms, pruned {lat['pruned']['median'] * 1e3:.1f} ms: "
          f"{lat['speedup']:.2f}x (median of {lat['repeats']})")
    if "flops_target" in d:
        t = d["flops_target"]
        print(f"FLOPs target {t['target']:g}: achieved {t['achieved']:.3f}x dense (keep ratio {t['rho_at_seqlen']:.3f} "
              f"at {t['seqlen']} tokens, resolved per input length)")
    if args.out:
        print(f"wrote {args.out}")
        write_report_quietly(args.out)
    return 0
