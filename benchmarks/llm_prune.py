"""Benchmark: magnitude vs Wanda vs SparseGPT on smollm2-135m at 50 %, 4:8, 2:4, 60 %, 70 %.

Each row prunes a fresh copy of the dense model (block-0 inputs captured once and shared; they
do not depend on the pruning) and reports perplexity on wiki:test, pruning time, peak RSS
during pruning (sampled), the exact block-Linear sparsity and the size of the sparse file with
fp16 values against the dense fp16 tensors. The dense model is the baseline of the same run.
Rows are appended to the JSON as they finish, so an interrupted run keeps what it measured.

    python benchmarks/llm_prune.py                        # full protocol: 128 x 512 calibration
    python benchmarks/llm_prune.py --nsamples 32 --eval-windows 16
    python benchmarks/llm_prune.py --quick                # smoke run, minutes
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import threading
import time
from pathlib import Path

import torch

from kenprune import provenance
from kenprune.assets.models import load_model
from kenprune.engine import capture_block_inputs
from kenprune.evaluate import perplexity
from kenprune.fileio import write_json
from kenprune.formats import save_sparse
from kenprune.measure import current_rss_bytes, path_bytes
from kenprune.methods import Pattern
from kenprune.protocol import PerplexityProtocol
from kenprune.pruning import calibration_windows, prune_model

SETTINGS = ("50%", "2:4", "70%", "4:8", "60%")
METHODS = ("magnitude", "wanda", "sparsegpt")


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> "PeakRss":
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, current_rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


def setting_args(setting: str) -> dict:
    if setting.endswith("%"):
        return {"sparsity": float(setting[:-1]) / 100, "pattern": None}
    return {"sparsity": 0.5, "pattern": setting}


def fp16_sizes(model: torch.nn.Module, pattern: str | None, folder: Path) -> dict:
    parsed = Pattern.parse(pattern)
    info = save_sparse(model, folder / "m.safetensors", nm=(parsed.n, parsed.m) if parsed.is_nm else None,
                       dtype=torch.float16)
    seen, dense = set(), 0
    for t in model.state_dict().values():
        if t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            dense += t.numel() * (2 if t.is_floating_point() else t.element_size())
    return {"sparse_fp16_bytes": info["bytes"], "dense_fp16_tensor_bytes": dense,
            "ratio": info["bytes"] / dense, "encodings": info["tensors_by_encoding"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--calib", default="wiki:calib")
    parser.add_argument("--eval", default="wiki:test")
    parser.add_argument("--nsamples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--eval-windows", type=int, default=None, help="first N windows of the eval split (default all)")
    parser.add_argument("--eval-seqlen", type=int, default=512, help="tokens per evaluation window (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="4 x 128 calibration, 2 eval windows, 50 %% only")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "llm_prune.json"))
    args = parser.parse_args()
    if args.quick:
        args.nsamples, args.seqlen, args.eval_seqlen, args.eval_windows, args.settings = 4, 128, 128, 2, "50%"
    if args.threads:
        torch.set_num_threads(args.threads)
    methods, settings = args.methods.split(","), args.settings.split(",")

    loaded = load_model(args.model)
    dense_model = loaded.model
    protocol = PerplexityProtocol(data=args.eval, seqlen=args.eval_seqlen, max_windows=args.eval_windows)
    result = {"benchmark": "llm_prune", "model": loaded.identity(),
              "calibration": {"data": args.calib, "nsamples": args.nsamples, "seqlen": args.seqlen, "seed": args.seed},
              "evaluation": protocol.to_dict(), "quick": args.quick, "threads": torch.get_num_threads(),
              "fp32_weight_bytes": sum(p.numel() * 4 for p in dense_model.parameters()), "rows": [],
              **provenance.record()}

    def evaluate(model: torch.nn.Module) -> float:
        loaded.model = model
        try:
            return perplexity(loaded, protocol, progress=False, identify=False).perplexity
        finally:
            loaded.model = dense_model

    start = time.perf_counter()
    windows = calibration_windows(loaded.tokenizer, args.calib, nsamples=args.nsamples, seqlen=args.seqlen,
                                  seed=args.seed)
    inputs = capture_block_inputs(dense_model, windows)
    result["calibration"]["activation_bytes"] = sum(h.numel() * h.element_size() for h in inputs.hidden)
    result["calibration"]["seconds"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loaded.model.save_pretrained(folder / "dense")
        dense_row = {"method": "dense", "setting": "-", "perplexity": evaluate(dense_model),
                     "dense_folder_bytes": path_bytes(folder / "dense")}
        result["rows"].append(dense_row)
        print(f"{'method':10} {'setting':7} {'ppl':>10} {'prune s':>8} {'peak RSS MiB':>12} {'sparsity':>8} "
              f"{'fp16 file':>9}", flush=True)
        print(f"{'dense':10} {'-':7} {dense_row['perplexity']:10.3f}", flush=True)
        write_json(args.out, result)
        for setting in settings:
            for method in methods:
                model = copy.deepcopy(dense_model)
                with PeakRss() as rss:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    report = prune_model(model, inputs, method=method, progress=False, **setting_args(setting))
                    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
                row = {"method": method, "setting": setting, "prune_seconds": seconds,
                       "prune_cpu_seconds": cpu_seconds, "peak_rss_bytes": rss.peak,
                       "block_linear_sparsity": report["block_linears"]["sparsity"],
                       "overall_sparsity": report["overall"]["sparsity"], "perplexity": evaluate(model),
                       "files": fp16_sizes(model, setting_args(setting)["pattern"], folder)}
                del model
                result["rows"].append(row)
                result["seconds"] = time.perf_counter() - start
                write_json(args.out, result)
                print(f"{method:10} {setting:7} {row['perplexity']:10.3f} {seconds:8.1f} {rss.peak / 2**20:12.0f} "
                      f"{row['block_linear_sparsity']:8.4f} {row['files']['ratio']:8.3f}x", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
