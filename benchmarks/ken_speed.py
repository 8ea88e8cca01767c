"""KEN selection speed: the vectorised path against the row-by-row reference, and whole models.

Baselines in the same run, timed on a subset of the same rows: tests/ken/reference.py's row-by-row
numpy implementation (the fast path must keep the very same indices there) and, when scikit-learn
is installed, the official code path (sklearn KernelDensity per row, pool deletion, value membership).
Goals: >= 100x the reference's rows/s; smollm2-135m at k=25% <= 60 s; minilm-l6 in seconds.
The fast path is timed on 1 and on 2 threads (rows are independent); the reference is one row at a time.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

from kenprune import provenance
from kenprune.fileio import write_json
from kenprune.ken.apply import select_masks, unique_parameters
from kenprune.ken.select import ken_rows_chunked, selection_threads
from kenprune.models.loading import load_model

ROOT = Path(__file__).resolve().parents[1]


def _load_reference():
    """tests/ken/reference.py loaded from its file (no sys.path edit): the row-by-row reference."""
    spec = importlib.util.spec_from_file_location("ken_reference", ROOT / "tests" / "ken" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_reference = _load_reference()
ken_row_official, ken_rows_reference = _reference.ken_row_official, _reference.ken_rows_reference


def row_case(name: str, rows: torch.Tensor, k: int, ref_rows: int) -> dict:
    start = time.perf_counter()
    expected = ken_rows_reference(rows[:ref_rows].double().numpy(), k)
    ref_rate = ref_rows / (time.perf_counter() - start)
    fast = {}
    for threads in (1, 2):
        with selection_threads(threads):
            ken_rows_chunked(rows[:64], k)  # compiled on first use (or loaded from numba's cache): not timed
            start = time.perf_counter()
            mask = ken_rows_chunked(rows, k)
            fast[threads] = rows.shape[0] / (time.perf_counter() - start)
    same = bool((mask[:ref_rows].numpy() == expected).all())
    out = {"case": name, "n": rows.shape[1], "k": k, "rows": rows.shape[0], "reference_rows": ref_rows,
           "reference_rows_per_s": ref_rate, "fast_rows_per_s_1_thread": fast[1], "fast_rows_per_s_2_threads": fast[2],
           "speedup_1_thread": fast[1] / ref_rate, "speedup_2_threads": fast[2] / ref_rate,
           "identical": same, "official_rows_per_s": None, "speedup_vs_official": None}
    if importlib.util.find_spec("sklearn") is not None:  # the official code path (scikit-learn KDE)
        start = time.perf_counter()
        for row in rows[:ref_rows].double().numpy():
            ken_row_official(row, k)
        out["official_rows_per_s"] = ref_rows / (time.perf_counter() - start)
        out["speedup_vs_official"] = fast[2] / out["official_rows_per_s"]
    return out


def model_case(name: str, k: float) -> dict:
    loaded = load_model(name)
    params, _ = unique_parameters(loaded.model)
    select_masks({name: p[:8] for name, p in params.items()}, list(params)[:4], k, progress=False)  # compile
    start = time.perf_counter()
    sel = select_masks(params, list(params), k, threads=2, progress=False)
    seconds = time.perf_counter() - start
    total = sum(p.numel() for p in params.values())
    return {"model": name, "k": k, "parameters": total, "kept": sel.kept(), "seconds": seconds,
            "params_per_s": total / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rows; skip the whole smollm2-135m")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ken_speed.json"))
    args = parser.parse_args(argv)
    ref_rows, fast_rows = (6, 512) if args.quick else (64, 4096)
    gen = torch.Generator().manual_seed(0)
    smollm2 = load_model("smollm2-135m").model.state_dict()
    minilm = load_model("minilm-l6").model.state_dict()
    cases = [
        ("random N(0, 0.04^2)", torch.randn(fast_rows, 576, generator=gen) * 0.04, 144),
        ("minilm-l6 layer.0 intermediate (n=384)", minilm["encoder.layer.0.intermediate.dense.weight"], 96),
        ("smollm2 embed_tokens (n=576)", smollm2["model.embed_tokens.weight"][:fast_rows], 144),
        ("smollm2 layers.0 down_proj (n=1536)", smollm2["model.layers.0.mlp.down_proj.weight"], 384),
    ]
    rows = []
    for name, tensor, k in cases:
        rows.append(row_case(name, tensor[:fast_rows], k, ref_rows))
        r = rows[-1]
        print(f"{r['case']:<42} n={r['n']:<5} k={r['k']:<4} reference {r['reference_rows_per_s']:7.1f} rows/s | "
              f"fast {r['fast_rows_per_s_1_thread']:8.0f} rows/s 1 thread ({r['speedup_1_thread']:5.1f}x), "
              f"{r['fast_rows_per_s_2_threads']:8.0f} 2 threads ({r['speedup_2_threads']:5.1f}x) | identical={r['identical']}"
              + (f"  | official (sklearn) {r['official_rows_per_s']:7.1f} rows/s: {r['speedup_vs_official']:.0f}x"
                 if r["official_rows_per_s"] else ""))
    models = [model_case("minilm-l6", 0.25)]
    if not args.quick:
        models.append(model_case("smollm2-135m", 0.25))
    for m in models:
        print(f"whole {m['model']:<14} k=25%: {m['seconds']:6.1f} s for {m['parameters']:,} parameters "
              f"({m['params_per_s'] / 1e6:.2f} M/s), kept {m['kept']:,}")
    write_json(args.out, {"benchmark": "ken_speed", "quick": args.quick, "rows": rows, "models": models,
                          "threads": {"reference": 1, "fast": [1, 2], "whole_models": 2}, "seed": 0,
                          **provenance.record()})
    print(f"wrote {args.out}")
    ok = all(r["identical"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
