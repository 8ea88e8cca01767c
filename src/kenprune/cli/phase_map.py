"""`kenprune phase-map`: prunability over fine-tuning steps (or checkpoints) x density, regimes named."""
from __future__ import annotations

import argparse

from ..settings import DEFAULT_ENCODER, PhaseMapSettings
from .options import add_model, add_output, output_from
from .report import write_report_quietly


def _numbers(kind: type, flag: str):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes comma-separated numbers, got {text!r}") from None

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    d = PhaseMapSettings()
    p = subparsers.add_parser("phase-map", help="prunability map: fine-tuning steps x density, loss barrier, regimes",
                              description="Prune checkpoints along a temperature-like axis (fine-tuning steps or "
                                          "listed checkpoints) at several densities; measure quality and the loss "
                                          "barrier to the dense parent; name each cell's regime (three-regime model).")
    add_model(p, default=DEFAULT_ENCODER)
    p.add_argument("--data", default=d.data, help=f"training (and calibration) data CORPUS[:SPLIT]; a labelled corpus "
                                                  f"makes a classifier (default {d.data})")
    p.add_argument("--steps", type=_numbers(int, "--steps"), default=d.steps,
                   help=f"fine-tuning steps of each checkpoint, e.g. 0,25,50,100 (default "
                        f"{','.join(map(str, d.steps))})")
    p.add_argument("--checkpoints", nargs="+", default=list(d.checkpoints), metavar="FOLDER",
                   help="model folders to map instead of fine-tuning (in temperature order) (default: none)")
    p.add_argument("--densities", type=_numbers(float, "--densities"), default=d.densities,
                   help=f"kept fractions, e.g. 0.9,0.7,0.5,0.3 (default {','.join(map(str, d.densities))})")
    p.add_argument("--method", default=d.method, help=f"pruning method: magnitude, wanda, sparsegpt (default {d.method})")
    p.add_argument("--recover-steps", type=int, default=d.recover_steps,
                   help=f"masked fine-tuning steps after pruning; 0: none (default {d.recover_steps})")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: 1e-4 classifier, 3e-5 causal LM)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"training batch (default {d.batch_size})")
    p.add_argument("--seqlen", type=int, default=d.seqlen, help=f"tokens per example or window (default {d.seqlen})")
    p.add_argument("--eval", dest="eval_data", default=d.eval_data,
                   help="held-out CORPUS:SPLIT (default: the test split of --data)")
    p.add_argument("--eval-examples", type=int, default=d.eval_examples,
                   help=f"held-out examples (classifier) or windows (causal LM) (default {d.eval_examples})")
    p.add_argument("--alphas", type=int, default=d.alphas,
                   help=f"points on the line pruned -> dense, ends included (default {d.alphas})")
    p.add_argument("--barrier-threshold", type=float, default=d.barrier_threshold,
                   help=f"loss barrier (nats) above which a cell is Regime I (default {d.barrier_threshold})")
    p.add_argument("--similarity-threshold", type=float, default=d.similarity_threshold,
                   help=f"CKA at or above which a connected cell is II-B, else II-A (default {d.similarity_threshold})")
    p.add_argument("--calib-samples", type=int, default=d.calib_samples,
                   help=f"calibration windows for wanda / sparsegpt (default {d.calib_samples})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of head, batches and windows (default {d.seed})")
    add_output(p, what="run.json (every cell)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.phase_map import run as phase_map

    settings = PhaseMapSettings(
        data=args.data, steps=args.steps, checkpoints=tuple(args.checkpoints), densities=args.densities,
        method=args.method, recover_steps=args.recover_steps, lr=args.lr, batch_size=args.batch_size,
        seqlen=args.seqlen, eval_data=args.eval_data, eval_examples=args.eval_examples, alphas=args.alphas,
        barrier_threshold=args.barrier_threshold, similarity_threshold=args.similarity_threshold,
        calib_samples=args.calib_samples, seed=args.seed)
    record = phase_map(args.model, settings, output=output_from(args))
    print(summary(record) + (f"\nwrote {args.out}" if args.out else ""))
    if args.out:
        write_report_quietly(args.out)
    return 0


def summary(record) -> str:
    """The map as text: one line per checkpoint, quality / barrier / regime per density."""
    d = record.details
    lines = [f"{record.method} phase map of {record.model['name']} ({d['axis']}; {d['quality_metric']} on "
             f"{d['held_out']['data']}, {d['held_out']['examples']} examples; barrier in nats)"]
    for t in d["temperatures"]:
        row = [c for c in d["cells"] if c["temperature"] == t]
        lines.append(f"{t:>12}: dense {row[0]['dense_quality']:.3f} | " + "  ".join(
            f"d={c['density']:g} {c['quality']:.3f} b={c['barrier']:.3f} {c['regime']}" for c in row))
    return "\n".join(lines)
