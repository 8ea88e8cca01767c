"""Benchmark: kenprune fp32 vs bf16 compute (and llm-compressor's oneshot) on the same windows, in one run.

For Wanda and SparseGPT at 50 % and 2:4 on smollm2-135m, each condition runs kenprune with
`--dtype float32` and `--dtype bfloat16` back to back (the order flips every condition: ABBA), each
as its own `kenprune prune` process (its prune time from the record, its peak RSS from the kernel),
on the same calibration windows (same corpus, seed and sizes), scored by the same loop: kenprune's
float32 perplexity on the same first N windows of wiki:test. The fp32 and bf16 masks are compared
entry by entry. llm-compressor (an optional extra: its own venv, since it pins other versions) runs
its WandaPruningModifier / SparseGPTModifier oneshot on the very same token windows (saved to a file),
and its saved model is scored by the same loop. Then the DSA search (budget 20) in fp32 and bf16, and
the machine's matmul ceiling in both dtypes (4096x576 @ 576x1536, the torch threads the runs use),
measured before and after, against which each prune's achieved GFLOP/s is set.

    python benchmarks/vs_reference.py                      # 16 x 512 calibration, 16 eval windows
    python benchmarks/vs_reference.py --nsamples 128 --eval-windows 32     # the issue's full protocol
    python benchmarks/vs_reference.py --llmc-python /work/venv-llmc/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import print_table, save  # noqa: E402
from llm_prune import run_rusage, setting_args  # noqa: E402

CONDITIONS = [("wanda", "50%"), ("wanda", "2:4"), ("sparsegpt", "50%"), ("sparsegpt", "2:4")]
DTYPES = ("float32", "bfloat16")
MATMUL = (4096, 576, 1536)
CEILING = f"""
import json, time, torch
torch.set_num_threads({{threads}})
m, k, n = {MATMUL}
out = {{{{}}}}
for dt in (torch.float32, torch.bfloat16):
    a, b = torch.randn(m, k).to(dt), torch.randn(k, n).to(dt)
    for _ in range(3): a @ b
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10): a @ b
        runs.append(2 * m * k * n * 10 / (time.perf_counter() - t) / 1e9)
    out[str(dt).replace("torch.", "")] = sorted(runs)[2]
print(json.dumps(out))
"""


def ceiling(threads: int) -> dict[str, float]:
    """Median-of-5 GFLOP/s of the 4096x576 @ 576x1536 product in fp32 and bf16, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", CEILING.format(threads=threads)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prune_flops(config: dict, windows: int, seqlen: int, method: str) -> dict[str, float]:
    """Matmul FLOPs of a prune: two block passes per window (statistics, then the pruned outputs), plus
    SparseGPT's Hessians (2 T c^2 per distinct Linear input), by the model's config."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    kv_dim = h // heads * kv
    t = seqlen
    linear = 2 * t * (2 * h * h + 2 * h * kv_dim + 3 * h * inter)
    attention = 2 * 2 * t * t * h
    forward = 2 * windows * layers * (linear + attention)
    hessian = windows * layers * 2 * t * (3 * h * h + inter * inter) if method == "sparsegpt" else 0
    return {"forward": forward, "statistics": hessian}


def mask_agreement(a: Path, b: Path) -> float:
    """Share of block-Linear weights whose zero/non-zero state is the same in two saved models."""
    from safetensors import safe_open

    same = total = 0
    files_a = sorted(a.glob("*.safetensors"))
    with safe_open(files_a[0], framework="pt") as fa, safe_open(b / files_a[0].name, framework="pt") as fb:
        for key in fa.keys():
            if ".layers." not in key or not key.endswith("proj.weight"):
                continue
            za, zb = fa.get_tensor(key) == 0, fb.get_tensor(key) == 0
            same += int((za == zb).sum())
            total += za.numel()
    return same / total


def kenprune_row(method: str, setting: str, dtype: str, args, tmp: Path) -> dict:
    from kenprune.record import read as read_record

    out = tmp / f"{method}-{setting.replace(':', '-').replace('%', '')}-{dtype}"
    seconds, peak = run_rusage(["prune", "--model", args.model, "--method", method, *setting_args(setting),
                                "--calib", args.calib, "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen),
                                "--seed", str(args.seed), "--dtype", dtype, "--eval", args.eval, "--eval-windows",
                                str(args.eval_windows), "--no-eval-before", "--out", str(out)])
    record = read_record(out)
    stages = {s.name: s for s in record.stages}
    return {"tool": "kenprune", "method": method, "setting": setting, "dtype": dtype,
            "prune_s": stages["prune"].seconds, "command_s": seconds, "peak_rss_mib": peak / 2**20,
            "prune_stage_peak_rss_mib": stages["prune"].peak_rss_bytes / 2**20,
            "perplexity": record.quality_of("after").value, "eval_dtype": record.quality_of("after").protocol["dtype"],
            "precision": record.details["precision"], "folder": str(out / "model"),
            "loadavg": os.getloadavg()}


def llmc_rows(args, tmp: Path, windows_file: Path, model_dir: str) -> list[dict]:
    from kenprune.models.loading import MODELS
    from kenprune.record import read as read_record

    rows = []
    for method, setting in CONDITIONS:
        if setting != "50%" and not args.llmc_nm:
            continue
        if method not in args.llmc_methods.split(","):
            rows.append({"tool": "llm-compressor", "method": method, "setting": setting, "dtype": "float32",
                         "error": "not run (--llmc-methods)"})
            continue
        out = tmp / f"llmc-{method}-{setting.replace(':', '-').replace('%', '')}"
        start = time.perf_counter()
        log_out, log_err = tmp / f"{out.name}.out", tmp / f"{out.name}.err"
        with open(log_out, "w") as fo, open(log_err, "w") as fe:
            proc = subprocess.Popen([args.llmc_python, str(HERE / "_llmc_oneshot.py"), model_dir, str(windows_file),
                                     method, "0.5" if setting == "50%" else setting, str(out), str(args.threads)],
                                    stdout=fo, stderr=fe)
            deadline = time.monotonic() + args.llmc_timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaped here: its own ru_maxrss
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    _, status, usage = os.wait4(proc.pid, 0)
                    fe.write(f"\nstopped after {args.llmc_timeout} s (the benchmark's time limit)\n")
                    break
                time.sleep(1)
        returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = log_out.read_text(), log_err.read_text()
        row = {"tool": "llm-compressor", "method": method, "setting": setting, "dtype": "float32",
               "command_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024,
               "loadavg": os.getloadavg()}
        if returncode:
            row["error"] = stderr.strip().splitlines()[-1][:300] if stderr.strip() else f"exit {returncode}"
            rows.append(row)
            print(f"llm-compressor {method} {setting} failed: {row['error']}", flush=True)
            continue
        info = json.loads(stdout.strip().splitlines()[-1])
        row.update({"prune_s": info["seconds"], "versions": info["versions"]})
        from safetensors.torch import load_file

        tables = {k: v for f in out.glob("*.safetensors") for k, v in load_file(str(f)).items()
                  if "embed" in k or "lm_head" in k}
        row["embedding_head_zero_fraction"] = (sum(int((v == 0).sum()) for v in tables.values()) /
                                               max(sum(v.numel() for v in tables.values()), 1))
        for source in Path(model_dir).iterdir():  # llm-compressor saves the weights only: the base's tokenizer
            if "token" in source.name or source.suffix == ".jinja":
                shutil.copy(source, out / source.name)
        scored = tmp / f"{out.name}-eval"
        try:
            # the base's BOS policy: llm-compressor's folder has no kenprune.json to carry it, and "auto" follows
            # the tokenizer, which for gemma3-270m's GGUF-converted one adds none (perplexity 73 instead of 29 dense)
            row["eval_bos"] = MODELS.get(args.model).bos if args.model in MODELS else "auto"
            run_rusage(["eval", "--model", str(out), "--bos", row["eval_bos"], "--data", args.eval,
                        "--max-windows", str(args.eval_windows),
                        "--out", str(scored)])
            row["perplexity"] = read_record(scored).quality_of("after").value
        except RuntimeError as exc:  # recorded, and the run's other rows are kept
            row["error"] = f"kenprune could not score its output: {str(exc).splitlines()[-1][:240]}"
            rows.append(row)
            print(f"llm-compressor {method} {setting}: {row['prune_s']:.1f} s, not scored: {row['error']}", flush=True)
            continue
        rows.append(row)
        print(f"llm-compressor {method} {setting}: {row['prune_s']:.1f} s, ppl {row['perplexity']:.3f}", flush=True)
    return rows


def search_row(dtype: str, args, tmp: Path) -> dict:
    from kenprune.record import read as read_record

    out = tmp / f"search-{dtype}"
    seconds, peak = run_rusage(["search", "--model", args.model, "--method", "wanda", "--sparsity", "0.7", "--budget",
                                str(args.budget), "--workers", "1", "--seed", str(args.seed), "--dtype", dtype,
                                "--out", str(out)])
    record = read_record(out)
    d = record.details
    stages = {s.name: s.seconds for s in record.stages}
    return {"dtype": dtype, "command_s": seconds, "peak_rss_mib": peak / 2**20, "setup_s": stages.get("setup"),
            "search_s": stages.get("search"), "baselines_s": stages.get("baselines"),
            "final_check_s": stages.get("final_check"), "best_function": d["function"], "fitness": d["fitness"],
            "fitness_fp32_check": (d.get("final_check") or {}).get("fitness", d["fitness"]),
            "uniform": d["baselines"]["uniform"], "owl": d["baselines"]["owl"],
            "evaluations": d["result"]["evaluations"], "loadavg": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--calib", default="wiki:calib")
    parser.add_argument("--eval", default="wiki:test")
    parser.add_argument("--nsamples", type=int, default=16, help="calibration windows (the issue's 128 does not fit "
                                                                 "the 25-minute budget on 2 shared cores)")
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--eval-windows", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=20, help="DSA search evaluations (0: skip the search)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process (1: robust on a "
                                                                 "shared machine where 2 threads wait on each other)")
    parser.add_argument("--conditions", default=",".join(f"{m}@{s}" for m, s in CONDITIONS))
    parser.add_argument("--llmc-python", default="/work/venv-llmc/bin/python",
                        help="python of a venv with llmcompressor (empty: skip llm-compressor)")
    parser.add_argument("--llmc-nm", action="store_true", help="also run llm-compressor at 2:4")
    parser.add_argument("--llmc-methods", default="wanda,sparsegpt",
                        help="llm-compressor methods to run (wanda,sparsegpt)")
    parser.add_argument("--llmc-timeout", type=float, default=480, help="seconds before an llm-compressor run is "
                                                                        "stopped and recorded as such")
    parser.add_argument("--name", default="vs_reference")
    args = parser.parse_args()
    conditions = [tuple(c.split("@")) for c in args.conditions.split(",") if c]
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every child process: the ceiling's thread count
    from kenprune.models.loading import resolve_model

    model_dir = str(resolve_model(args.model)[1])
    config = json.loads((Path(model_dir) / "config.json").read_text())
    start = time.perf_counter()
    result: dict = {"config": {"model": args.model, "calibration": {"data": args.calib, "nsamples": args.nsamples,
                                                                     "seqlen": args.seqlen, "seed": args.seed},
                               "evaluation": {"data": args.eval, "seqlen": 512, "windows": args.eval_windows,
                                              "dtype": "float32 (every row scored by kenprune's loop)"},
                               "threads": args.threads, "matmul": MATMUL, "budget": args.budget,
                               "cpu_flags": {}},
                    "loadavg_start": os.getloadavg()}
    from kenprune.precision import cpu_flags, resolve_dtype

    flags = cpu_flags()
    result["config"]["cpu_flags"] = {f: f in flags for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")}
    result["config"]["auto_dtype"] = resolve_dtype("auto").to_dict()
    ceilings = [ceiling(args.threads)]
    print(f"matmul ceiling {MATMUL}: fp32 {ceilings[0]['float32']:.0f} GFLOP/s, bf16 {ceilings[0]['bfloat16']:.0f} "
          f"GFLOP/s (load {os.getloadavg()[0]:.1f})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for i, (method, setting) in enumerate(conditions):
            for dtype in (DTYPES if i % 2 == 0 else DTYPES[::-1]):  # ABBA: load drift falls on both
                row = kenprune_row(method, setting, dtype, args, tmp)
                rows.append(row)
                print(f"kenprune {method} {setting} {dtype}: prune {row['prune_s']:.1f} s, peak RSS "
                      f"{row['peak_rss_mib']:.0f} MiB, ppl {row['perplexity']:.3f} (load {row['loadavg'][0]:.1f})",
                      flush=True)
            pair = {r["dtype"]: r for r in rows[-2:]}
            agreement = mask_agreement(Path(pair["float32"]["folder"]), Path(pair["bfloat16"]["folder"]))
            for r in rows[-2:]:
                r["mask_agreement_vs_fp32"] = agreement
        ceilings.append(ceiling(args.threads))
        llmc: list[dict] = []
        if args.llmc_python and Path(args.llmc_python).exists():
            windows_file = tmp / "windows.pt"
            subprocess.run([sys.executable, "-c", (
                "import sys, torch; from kenprune.data.windows import calibration_windows; "
                "from kenprune.models.loading import load_tokenizer; "
                f"w = calibration_windows(load_tokenizer({args.model!r}), {args.calib!r}, nsamples={args.nsamples}, "
                f"seqlen={args.seqlen}, seed={args.seed}); torch.save(w, sys.argv[1])"), str(windows_file)], check=True)
            llmc = llmc_rows(args, tmp, windows_file, model_dir)
        elif args.llmc_python:
            llmc = [{"tool": "llm-compressor", "error": f"{args.llmc_python} not found: the extra is not installed"}]
        searches = []
        if args.budget:
            for dtype in DTYPES:
                searches.append(search_row(dtype, args, tmp))
                s = searches[-1]
                print(f"search {dtype}: setup {s['setup_s']:.1f} s, search {s['search_s']:.1f} s, best {s['fitness']:.3f}"
                      f" (fp32 check {s['fitness_fp32_check']:.3f})", flush=True)
        ceilings.append(ceiling(args.threads))
    ceil = {dt: statistics.median(c[dt] for c in ceilings) for dt in ("float32", "bfloat16")}
    for row in rows:
        flops = prune_flops(config, args.nsamples, args.seqlen, row["method"])
        row["prune_gflop"] = (flops["forward"] + flops["statistics"]) / 1e9
        row["achieved_gflops"] = row["prune_gflop"] / row["prune_s"]
        row["share_of_ceiling"] = row["achieved_gflops"] / ceil[row["dtype"]]
        base = next(r for r in rows if r["method"] == row["method"] and r["setting"] == row["setting"]
                    and r["dtype"] == "float32")
        row["speedup_vs_fp32"] = base["prune_s"] / row["prune_s"]
        row["ppl_change_vs_fp32"] = row["perplexity"] / base["perplexity"] - 1
        del row["folder"]
    for row in llmc:
        base = next((r for r in rows if r["method"] == row.get("method") and r["setting"] == row.get("setting")
                     and r["dtype"] == "float32"), None)
        if base and "prune_s" in row:
            row["kenprune_fp32_speedup_vs_llmc"] = row["prune_s"] / base["prune_s"]
    table = [{"tool": r["tool"], "method": r.get("method"), "setting": r.get("setting"), "dtype": r.get("dtype"),
              "prune_s": r.get("prune_s"), "speedup": r.get("speedup_vs_fp32"), "peak_MiB": r.get("peak_rss_mib"),
              "ppl": r.get("perplexity"), "ppl_vs_fp32": (f"{100 * r['ppl_change_vs_fp32']:+.2f}%"
                                                          if "ppl_change_vs_fp32" in r else None),
              "mask_agree": r.get("mask_agreement_vs_fp32"), "GFLOP/s": r.get("achieved_gflops"),
              "of_ceiling": r.get("share_of_ceiling"), "note": r.get("error")} for r in rows + llmc]
    print()
    print(f"matmul ceiling (median of {len(ceilings)}): fp32 {ceil['float32']:.0f} GFLOP/s, bf16 "
          f"{ceil['bfloat16']:.0f} GFLOP/s ({ceil['bfloat16'] / ceil['float32']:.2f}x)")
    if table:
        print_table(table, list(table[0]))
    if searches:
        print()
        print_table(searches, ["dtype", "setup_s", "search_s", "baselines_s", "final_check_s", "fitness",
                               "fitness_fp32_check", "uniform", "owl", "best_function"])
    save(args.name, result["config"], rows, llm_compressor=llmc, search=searches, ceilings=ceilings,
         ceiling_median=ceil, loadavg_start=result["loadavg_start"], loadavg_end=os.getloadavg(),
         wall_seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
