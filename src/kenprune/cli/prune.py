"""`kenprune prune`: element-wise pruning (magnitude, Wanda, SparseGPT; unstructured or N:M) of an LLM."""
from __future__ import annotations

import argparse

from ..settings import STREAM_MODES, PruneSettings
from .options import add_calibration, add_evaluation, add_model, add_output, add_tasks, calibration_from, \
    evaluation_from, output_from, task_lines
from .report import write_report_quietly
from .stats import add_federated, federated_from


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..methods import METHODS

    d = PruneSettings()
    p = subparsers.add_parser("prune", help="prune an LLM block by block and save files that shrink")
    add_model(p)
    p.add_argument("--method", default=d.method, help=f"one of: {', '.join(METHODS.names())} (default {d.method}; "
                                                     f"whole heads and channels: kenprune structured)")
    p.add_argument("--sparsity", type=float, default=d.sparsity, help="fraction of weights zeroed, in [0, 1) "
                                                                      "(default 0.5)")
    p.add_argument("--pattern", default=d.pattern, help="unstructured (default) or N:M, e.g. 2:4 (N of every M zeroed)")
    p.add_argument("--group", default=d.group,
                   help="comparison group: magnitude matrix|row, wanda row|matrix, sparsegpt block|row "
                        "(default: the method's own)")
    p.add_argument("--allocation", default=d.allocation,
                   help="spread --sparsity over layers: uniform|global|er|er-plus|owl|dsa:FUNCTION|FILE "
                        "(a `kenprune search` best.json); default: the same ratio everywhere")
    p.add_argument("--include-embeddings", action="store_true",
                   help="also prune embeddings and LM head (magnitude, per row)")
    p.add_argument("--sparse-dtype", default=d.sparse_dtype, help="values dtype in the sparse file: "
                                                                  "same|float32|float16|bfloat16 (default same)")
    p.add_argument("--device", default=d.device, help="compute device (default: cuda if present, else cpu)")
    p.add_argument("--max-memory", default=d.max_memory,
                   help="memory the run may use, e.g. 600MB or 4GB: above it the model is streamed block by block "
                        "from its safetensors files (default: 80%% of the memory available)")
    p.add_argument("--stream", default=d.stream, choices=STREAM_MODES,
                   help="auto: stream when the in-memory path would exceed --max-memory (default); on: always; "
                        "off: never. A streamed run killed midway resumes from its last block (OUT.checkpoint)")
    add_calibration(p, dtype=True)
    add_evaluation(p)
    add_tasks(p)
    add_federated(p)
    add_output(p, what="model/, model.sparse.safetensors, run.json")
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> PruneSettings:
    return PruneSettings(method=args.method, sparsity=args.sparsity, pattern=args.pattern, group=args.group,
                         allocation=args.allocation, include_embeddings=args.include_embeddings,
                         sparse_dtype=args.sparse_dtype, device=args.device, max_memory=args.max_memory,
                         stream=args.stream)


def run(args: argparse.Namespace) -> int:
    from ..errors import KenpruneError
    from ..jobs.prune import run as prune

    if args.method == "structured":
        raise KenpruneError("structured pruning has its own command: kenprune structured --help")
    record = prune(args.model, settings_from(args), calibration=calibration_from(args),
                   evaluation=evaluation_from(args), output=output_from(args), federated=federated_from(args))
    print(summary(record))
    if args.out:
        print(f"wrote {args.out}")
        write_report_quietly(args.out)
    return 0


def summary(record) -> str:
    """What a prune run did, in a few lines, from its record."""
    d = record.details
    linears = d["block_linears"]
    seconds = record.seconds()
    lines = [f"{record.method} {d['pattern']}: block Linears {linears['sparsity']:.4f} sparse "
             f"({linears['zeros']}/{linears['parameters']}), overall {d['overall']['sparsity']:.4f}, "
             f"prune {seconds['prune']:.1f} s, peak RSS {record.peak_rss_bytes / 2**20:.0f} MiB"]
    memory = d.get("memory") or {}
    if memory.get("path") == "streamed":
        resumed = memory.get("resumed_from_block")
        lines.append(f"streamed block by block from safetensors ({memory['reason']})"
                     + (f"; resumed at block {resumed}" if resumed else "")
                     + (f"; {memory['spilled_bytes'] / 2**20:.1f} MiB of activations spilled to disk"
                        if memory.get("spilled_bytes") else ""))
    if "precision" in d:
        lines.append(f"compute dtype {d['precision']['dtype']} ({d['precision']['reason']}); statistics float32")
    after, before = record.quality_of("after"), record.quality_of("before")
    if after is not None:
        lines.append(f"{after.metric} " + (f"{before.value:.3f} -> " if before is not None else "") + f"{after.value:.3f}"
                     + (f" ({after.protocol['dtype']} evaluation)" if after.protocol.get("dtype", "float32")
                        != "float32" else ""))
    lines += task_lines(record)
    if "federated" in d:
        from ..federated.report import federated_lines

        lines += federated_lines(d["federated"])
    if "sizes" in d:
        s = d["sizes"]
        lines.append(f"dense folder {s['dense_folder_bytes'] / 2**20:.1f} MiB, sparse file "
                     f"{s['sparse_file_bytes'] / 2**20:.1f} MiB ({s['sparse_vs_dense_same_dtype']:.3f}x dense)")
    return "\n".join(lines)
