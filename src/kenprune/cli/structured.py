"""`kenprune structured`: remove whole attention heads and MLP channels (LLM-Pruner) into a smaller dense model."""
from __future__ import annotations

import argparse

from ..settings import STRUCTURED_CALIBRATION, STRUCTURED_EVALUATION, StructuredSettings
from .options import add_calibration, add_evaluation, add_model, add_output, add_tasks, calibration_from, \
    evaluation_from, output_from, task_lines
from .report import write_report_quietly
from .stats import add_federated, federated_from


def register(subparsers: argparse._SubParsersAction) -> None:
    d = StructuredSettings()
    p = subparsers.add_parser("structured", help="remove whole heads and MLP channels: a smaller dense model")
    add_model(p)
    p.add_argument("--importance", default=d.importance,
                   help="l1, l2, taylor (default: sum |W*grad|, LLM-Pruner's), second-order, vector, random, "
                        "beta-rank (activation spread x L1, Beta-Rank) or polarization (gates trained with "
                        "--steps)")
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
    p.add_argument("--beta", type=float, default=d.beta,
                   help=f"beta-rank: weight of the data-aware rank against the L1 rank, in [0, 1] (default {d.beta})")
    p.add_argument("--stability", type=int, default=d.stability,
                   help="also select with N calibration subsets and seeds and record the overlap of the kept and "
                        "removed units (default 0: off)")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="training steps after pruning: LoRA recovery, or the gate training of polarization "
                        f"(default {d.steps}: none)")
    p.add_argument("--train-data", default=d.train_data, help=f"text the training reads (default {d.train_data}); a classifier "
                   f"trains on a labelled split, by default the one it was fine-tuned on")
    p.add_argument("--train-seqlen", type=int, default=d.train_seqlen,
                   help=f"tokens per training window (default {d.train_seqlen})")
    p.add_argument("--from-scratch", action="store_true",
                   help="also re-initialize the pruned architecture and train it with the same data and steps "
                        "(the scratch control), reported beside the recovered model")
    p.add_argument("--polarization", type=float, default=d.polarization,
                   help=f"weight of the polarization penalty on the gates (default {d.polarization})")
    p.add_argument("--gate-lr", type=float, default=d.gate_lr,
                   help=f"learning rate of the polarization gates (default {d.gate_lr})")
    p.add_argument("--scratch-lr", type=float, default=d.scratch_lr,
                   help=f"learning rate of the scratch control's full training (default {d.scratch_lr})")
    add_calibration(p, STRUCTURED_CALIBRATION, batch=False)
    add_evaluation(p, STRUCTURED_EVALUATION)
    add_tasks(p)
    add_federated(p, how="importances from their merged sums, one round on the dense model")
    add_output(p, required=True, what="the pruned HF model and run.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.structured import run as structured

    settings = StructuredSettings(importance=args.importance, ratio=args.ratio, keep_first=args.keep_first,
                                  keep_last=args.keep_last, round_to=args.round_to,
                                  global_ranking=args.global_ranking, attention_unit=args.attention_unit,
                                  blocks_per_pass=args.blocks_per_pass, latency=args.latency,
                                  latency_repeats=args.latency_repeats, beta=args.beta, stability=args.stability,
                                  steps=args.steps, train_data=args.train_data, train_seqlen=args.train_seqlen,
                                  from_scratch=args.from_scratch, polarization=args.polarization,
                                  gate_lr=args.gate_lr, scratch_lr=args.scratch_lr)
    record = structured(args.model, settings, calibration=calibration_from(args), evaluation=evaluation_from(args),
                        output=output_from(args), federated=federated_from(args))
    print(summary(record, args.out))
    write_report_quietly(args.out)
    return 0


def widths_note(d: dict) -> str:
    """Whether the widths are uniform, and which loader the saved folder needs."""
    widths = "uniform widths" if d["uniform_widths"] else "per-block widths"
    if d.get("loader", "transformers") == "transformers":
        return f"{widths} (reloads with plain transformers from_pretrained)"
    return f"{widths} (reloads with kenprune.load / kenprune's loader only)"


def summary(record, out) -> str:
    d = record.details
    size = record.file("model").bytes
    lines = [f"structured {d['importance']} ratio {d['plan']['ratio']}: parameters "
             f"{d['parameters_before'] / 1e6:.2f}M -> {d['parameters_after'] / 1e6:.2f}M "
             f"(blocks -{100 * d['block_parameters_removed']:.1f}%), "
             f"{widths_note(d)}, {size / 2**20:.1f} MiB on disk"]
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
    if "stability" in d:
        st = d["stability"]
        lines.append(f"selection stability over {st['runs']} calibration subsets: kept overlap "
                     f"{st['kept_overlap']:.3f}, removed overlap {st['removed_overlap']:.3f} (Jaccard, mean of pairs)")
    if d.get("federated"):
        from ..federated.structured import federated_lines

        lines += federated_lines(d["federated"])
    lines += [f"{q.model}: {q.metric} {q.value:.3f}" for q in record.quality if q.role == "reference"]
    lines += task_lines(record)
    lines.append(f"wrote {out}")
    return "\n".join(lines)
