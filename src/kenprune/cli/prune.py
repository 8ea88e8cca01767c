"""`kenprune prune`: element-wise pruning (magnitude, Wanda, SparseGPT; unstructured or N:M) of an LLM."""
from __future__ import annotations

import argparse

from ..evaluate.protocol import CALIBRATION_BATCH
from ..structured.cli import add_arguments as add_structured_arguments
from .report import write_report_quietly as _write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..methods import METHODS

    p = subparsers.add_parser("prune", help="prune an LLM block by block and save files that shrink")
    p.add_argument("--model", default="smollm2-135m", help="registry name, local folder or hub id")
    p.add_argument("--method", default="wanda",
                   help=f"one of: {', '.join(METHODS.names())}, structured (default wanda)")
    p.add_argument("--sparsity", type=float, default=None, help="fraction of weights zeroed, in [0, 1) (default 0.5)")
    p.add_argument("--pattern", default=None, help="unstructured (default) or N:M, e.g. 2:4 (N of every M zeroed)")
    p.add_argument("--group", default=None,
                   help="comparison group: magnitude matrix|row, wanda row|matrix, sparsegpt block|row")
    p.add_argument("--calib", default="wiki:calib", help="calibration data CORPUS:SPLIT (default wiki:calib)")
    p.add_argument("--nsamples", type=int, default=None,
                   help="calibration windows (default 128; structured: 10, as LLM-Pruner)")
    p.add_argument("--seqlen", type=int, default=None,
                   help="tokens per calibration/eval window (default 512; structured: 128 for gradients)")
    p.add_argument("--eval-seqlen", type=int, default=None,
                   help="structured only: tokens per evaluation window (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder: model/, model.sparse.safetensors, report.json")
    p.add_argument("--eval", default=None, help="perplexity before/after on CORPUS:SPLIT, e.g. wiki:test")
    p.add_argument("--eval-windows", type=int, default=None, help="evaluate only the first N windows")
    p.add_argument("--no-eval-before", dest="eval_before", action="store_false",
                   help="with --eval: skip the dense model's perplexity (already known; saves time and memory)")
    p.add_argument("--include-embeddings", action="store_true",
                   help="also prune embeddings and LM head (magnitude, per row)")
    p.add_argument("--sparse-dtype", default="same", help="values dtype in the sparse file: same|float16|bfloat16")
    p.add_argument("--batch-size", type=int, default=CALIBRATION_BATCH,
                   help="calibration windows per block forward (more is faster on a GPU, costs memory)")
    p.add_argument("--device", default=None, help="compute device (default: cuda if present, else cpu)")
    p.add_argument("--allocation", default=None,
                   help="spread --sparsity over layers: uniform|global|er|er-plus|owl|dsa:FUNCTION|FILE "
                        "(a `kenprune search` best.json); default: the same ratio everywhere")
    add_structured_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.method == "structured":
        from ..structured.cli import run as run_structured

        args.nsamples = args.nsamples or 10
        args.seqlen = args.seqlen or 128
        args.eval_seqlen = args.eval_seqlen or 512
        code = run_structured(args)
        _write_report(args.out)
        return code
    from ..errors import KenpruneError
    from ..methods import METHODS
    from ..jobs.prune import prune

    if args.method not in METHODS:
        raise KenpruneError(f"unknown method {args.method!r}; choose one of: {', '.join(METHODS.names())}, structured")
    args.nsamples = args.nsamples or 128
    args.seqlen = args.seqlen or 512

    report = prune(args.model, method=args.method, sparsity=args.sparsity, pattern=args.pattern, group=args.group,
                   calib=args.calib, nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed, out=args.out,
                   eval=args.eval, eval_windows=args.eval_windows, include_embeddings=args.include_embeddings,
                   sparse_dtype=args.sparse_dtype, batch_size=args.batch_size, device=args.device,
                   allocation=args.allocation, eval_before=args.eval_before)
    linears = report["block_linears"]
    print(f"{report['method']} {report['pattern']}: block Linears {linears['sparsity']:.4f} sparse "
          f"({linears['zeros']}/{linears['parameters']}), overall {report['overall']['sparsity']:.4f}, "
          f"prune {report['seconds']['prune']:.1f} s, peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB")
    if "after" in report:
        before = f"{report['before']['perplexity']:.3f} -> " if "before" in report else ""
        print(f"perplexity {before}{report['after']['perplexity']:.3f}")
    if "files" in report:
        files = report["files"]
        print(f"dense folder {files['dense_folder_bytes'] / 2**20:.1f} MiB, sparse file "
              f"{files['sparse_file_bytes'] / 2**20:.1f} MiB ({files['sparse_vs_dense_same_dtype']:.3f}x dense)")
        print(f"wrote {args.out}")
        _write_report(args.out)
    return 0
