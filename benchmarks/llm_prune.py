"""Benchmark: magnitude vs Wanda vs SparseGPT on smollm2-135m at 50 %, 4:8, 2:4, 60 %, 70 %.

Every row is one real `kenprune prune` run in its own process, exactly as a user would type it
(fp16 sparse file, perplexity after pruning), so its peak RSS is the command's own (the
kernel's ru_maxrss for that process) and its file sizes are the files it wrote. The dense
model (`kenprune eval`) is the baseline of the same run. One extra row prunes the embeddings
too (`--include-embeddings`), which the default leaves dense. Rows are appended to the JSON as
they finish, so an interrupted run keeps what it measured.

    python benchmarks/llm_prune.py                          # issue protocol: 128 x 512 calibration
    python benchmarks/llm_prune.py --methods wanda --settings 50%
    python benchmarks/llm_prune.py --quick                  # smoke run, minutes
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kenprune import provenance
from kenprune.fileio import write_json
from kenprune.models.loading import resolve_model
from kenprune.record import read as read_record

SETTINGS = ("50%", "2:4", "70%", "4:8", "60%")
METHODS = ("magnitude", "wanda", "sparsegpt")


# What any transformers-based pruning process holds before it reads a model: the interpreter,
# torch, and the transformers model/tokenizer classes (which import scikit-learn when installed).
RUNTIME_IMPORTS = ("import kenprune.cli, transformers; from transformers import AutoModelForCausalLM, AutoTokenizer; "
                   "from kenprune.measure import peak_rss_bytes; print(peak_rss_bytes())")


def run_rusage(args: list[str]) -> tuple[float, int]:
    """Run `python -m kenprune ARGS` and reap it ourselves, so its own ru_maxrss is known.

    ru_maxrss also counts the address space that exec'd the child, i.e. this process: it stays
    small (no model loaded here) so the figure is the command's own."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kenprune", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"kenprune {' '.join(args)} failed:\n{stderr[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def model_terms(model: str) -> tuple[int, int]:
    """(hidden size, fp32 weight bytes) from config.json and the safetensors headers: no weights
    are loaded into this process, whose own memory would otherwise count in the rows' ru_maxrss."""
    from safetensors import safe_open

    folder = Path(resolve_model(model)[1])
    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    numel = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(file, framework="numpy") as f:
            for key in f.keys():
                numel += math.prod(f.get_slice(key).get_shape())
    return hidden, numel * 4


def runtime_rss() -> int:
    """Peak RSS of a process that only imports what `kenprune prune` imports before reading a model."""
    out = subprocess.run([sys.executable, "-c", RUNTIME_IMPORTS], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def setting_args(setting: str) -> list[str]:
    if setting.endswith("%"):
        return ["--sparsity", str(float(setting[:-1]) / 100)]
    return ["--pattern", setting]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--calib", default="wiki:calib")
    parser.add_argument("--eval", default="wiki:test")
    parser.add_argument("--nsamples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=512, help="calibration window length")
    parser.add_argument("--eval-seqlen", type=int, default=512, help="evaluation window length (the protocol's 512)")
    parser.add_argument("--eval-windows", type=int, default=32, help="first N windows of the eval split (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--no-embeddings-row", action="store_true", help="skip the --include-embeddings row")
    parser.add_argument("--batch-size", type=int, default=None, help="calibration windows per block forward "
                        "(default: the CLI's own default)")
    parser.add_argument("--quick", action="store_true", help="4 x 128 calibration, 2 eval windows, 50 %% only")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "llm_prune.json"))
    args = parser.parse_args()
    if args.quick:
        args.nsamples, args.seqlen, args.eval_windows, args.settings = 4, 128, 2, "50%"
    methods, settings = args.methods.split(","), args.settings.split(",")
    hidden, weight_bytes = model_terms(args.model)
    windows = ["--eval-windows", str(args.eval_windows)] if args.eval_windows else []
    common = ["--model", args.model, "--calib", args.calib, "--nsamples", str(args.nsamples), "--seqlen",
              str(args.seqlen), "--seed", str(args.seed), "--sparse-dtype", "float16", "--eval", args.eval,
              "--eval-seqlen", str(args.eval_seqlen), "--no-eval-before", *(["--batch-size", str(args.batch_size)] if args.batch_size else []), *windows]
    result = {"benchmark": "llm_prune", "model": args.model,
              "calibration": {"data": args.calib, "nsamples": args.nsamples, "seqlen": args.seqlen, "seed": args.seed,
                              "batch_size": args.batch_size or "cli-default",
                              "activation_bytes": args.nsamples * args.seqlen * hidden * 4},
              "fp32_weight_bytes": weight_bytes,
              "rss_goal_bytes": 2 * weight_bytes + args.nsamples * args.seqlen * hidden * 4,
              "evaluation": {"data": args.eval, "seqlen": args.eval_seqlen, "windows": args.eval_windows or "all"},
              "quick": args.quick, "rows": [], "complete": False, **provenance.record()}
    start = time.perf_counter()
    runtime = runtime_rss()
    result["runtime_rss_bytes"] = runtime
    with tempfile.TemporaryDirectory() as tmp:
        dense_out = Path(tmp) / "dense"
        eval_args = ["--max-windows", str(args.eval_windows)] if args.eval_windows else []
        seconds, peak = run_rusage(["eval", "--model", args.model, "--data", args.eval, "--seqlen",
                                    str(args.eval_seqlen), *eval_args, "--out", str(dense_out)])
        dense_record = read_record(dense_out)
        dense = {"perplexity": dense_record.quality_of("after").value}
        result["model_identity"] = dense_record.model
        result["rows"].append({"method": "dense", "setting": "-", "perplexity": dense["perplexity"],
                               "peak_rss_bytes": peak, "seconds": seconds})
        print(f"runtime before any model (python, torch, transformers classes): {runtime / 2**20:.0f} MiB")
        print(f"{'method':10} {'setting':9} {'ppl':>10} {'prune s':>8} {'peak RSS MiB':>12} {'sparsity':>8} "
              f"{'fp16 file':>10}", flush=True)
        print(f"{'dense':10} {'-':9} {dense['perplexity']:10.3f} {'':8} {peak / 2**20:12.0f}", flush=True)
        write_json(args.out, result)
        jobs = [(m, s, []) for s in settings for m in methods]
        if not args.no_embeddings_row:  # right after the 50 % rows it compares with
            at = max((i + 1 for i, (_, s, _) in enumerate(jobs) if s == "50%"), default=len(jobs))
            jobs.insert(at, ("wanda", "50%", ["--include-embeddings"]))
        for method, setting, extra in jobs:
            out = Path(tmp) / f"{method}-{setting.replace(':', '_').replace('%', '')}{'-emb' if extra else ''}"
            seconds, peak = run_rusage(["prune", *common, "--method", method, *setting_args(setting), *extra,
                                        "--out", str(out)])
            record = read_record(out)
            files = record.details["sizes"]
            row = {"method": method, "setting": setting + (" +emb" if extra else ""), "flags": extra,
                   "perplexity": record.quality_of("after").value, "prune_seconds": record.seconds()["prune"],
                   "command_seconds": seconds, "peak_rss_bytes": peak, "peak_above_runtime_bytes": peak - runtime,
                   "peak_rss_bytes_after_stage": {s.name: s.peak_rss_bytes for s in record.stages},
                   "block_linear_sparsity": record.details["block_linears"]["sparsity"],
                   "overall_sparsity": record.details["overall"]["sparsity"],
                   "sparse_fp16_bytes": files["sparse_file_bytes"],
                   "dense_fp16_tensor_bytes": files["dense_tensor_bytes_same_dtype"],
                   "ratio": files["sparse_vs_dense_same_dtype"], "dense_folder_bytes": files["dense_folder_bytes"],
                   "encodings": record.details["sparse_encoding"]["tensors_by_encoding"]}
            result["rows"].append(row)
            result["seconds"] = time.perf_counter() - start
            write_json(args.out, result)
            print(f"{method:10} {row['setting']:9} {row['perplexity']:10.3f} {row['prune_seconds']:8.1f} "
                  f"{peak / 2**20:12.0f} {row['block_linear_sparsity']:8.4f} {row['ratio']:9.3f}x", flush=True)
    result["complete"] = True
    write_json(args.out, result)
    print(f"peak RSS goal (2 x fp32 weights + calibration activations): {result['rss_goal_bytes'] / 2**20:.0f} MiB; "
          f"the runtime alone holds {runtime / 2**20:.0f} MiB of it")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
