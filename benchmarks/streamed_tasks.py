"""Zero-shot tasks on the streamed path: does scoring block by block give the in-memory accuracies, hold less, cost little?

smollm2-135m, kenprune's local tasks (default sentiment and analogy, the first --limit items each), lm-eval's
HFLM on the model in memory against `StreamedLM` on a LazyModel (`kenprune prune --stream on --eval-tasks`):
every request of a task passes block 0, then block 1, ... Each run is a fresh subprocess (OMP_NUM_THREADS=1),
alternated A B A B, medians reported: the evaluation's own peak RSS (VmHWM reset through /proc/self/clear_refs
once the model is open), the RSS before it (runtime + weights in memory, runtime + skeleton streamed), the
evaluation time and the time to open the model; per-task accuracy, correct count and per-request equality
are checked between the paths (accuracies with their Wilson 95 % interval: the item counts are small).

    python benchmarks/streamed_tasks.py [--reps 2] [--tasks sentiment,analogy] [--limit 40] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import print_table, save

HERE = Path(__file__).resolve()
MODEL = "smollm2-135m"


def vm_hwm() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


def child(path: str, tasks: str, limit: int, batch_size: int) -> None:
    """In the subprocess: open the model (whole or lazily), reset the peak, run the tasks, print JSON."""
    import torch

    from kenprune.evaluate.zero_shot import run_tasks, select_tasks
    from kenprune.measure import current_rss_bytes, release_free_memory
    from kenprune.models.lazy import LazyModel
    from kenprune.models.loading import load_model

    torch.set_num_threads(1)
    selection = select_tasks(tasks)
    start = time.perf_counter()
    loaded = load_model(MODEL) if path == "in-memory" else LazyModel.open(MODEL).loaded()
    open_s = time.perf_counter() - start
    open_peak = vm_hwm()
    release_free_memory()  # what opening freed (the streamed path hashes every tensor) back to the OS first
    with open("/proc/self/clear_refs", "w") as fh:  # the evaluation's own peak from here
        fh.write("5")
    before = current_rss_bytes()
    start = time.perf_counter()
    result = run_tasks(loaded, selection, limit=limit, batch_size=batch_size, progress=False, device="cpu")
    eval_s = time.perf_counter() - start
    print("STREAMEDTASKS " + json.dumps({
        "path": path, "open_s": open_s, "eval_s": eval_s, "open_peak_rss": open_peak, "rss_before_eval": before,
        "eval_peak_rss": vm_hwm(), "protocol_path": result["protocol"]["path"],
        "tasks": [{k: t.get(k) for k in ("task", "value", "correct", "n", "ci95", "streamed", "seconds")}
                  for t in result["tasks"]]}), flush=True)


def run_child(path: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MALLOC_ARENA_MAX": "2",
           "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--child", path, args.tasks, str(args.limit),
                           str(args.batch_size)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    line = next((x for x in proc.stdout.splitlines() if x.startswith("STREAMEDTASKS ")), None)
    if line is None:
        raise SystemExit(f"{path} run failed: {(proc.stderr.strip().splitlines() or [''])[-1]}")
    return {**json.loads(line[len("STREAMEDTASKS "):]), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--tasks", default="sentiment,analogy")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    import torch

    from kenprune.evaluate.zero_shot import lm_eval_version

    rows: list[dict] = []
    load = [os.getloadavg()]
    start = time.perf_counter()
    for rep in range(args.reps):
        for path in ("in-memory", "streamed"):  # alternated A B A B
            row = {**run_child(path, args), "rep": rep}
            rows.append(row)
            load.append(os.getloadavg())
            print(f"{path} rep {rep}: eval {row['eval_s']:.1f} s, eval peak {row['eval_peak_rss'] / 2**20:.0f} MiB, "
                  f"acc {[t['value'] for t in row['tasks']]}", flush=True)
    wall = time.perf_counter() - start
    by = {p: [r for r in rows if r["path"] == p] for p in ("in-memory", "streamed")}
    med = {p: {k: statistics.median(r[k] for r in by[p]) for k in
               ("open_s", "eval_s", "rss_before_eval", "eval_peak_rss", "open_peak_rss", "wall_s")} for p in by}
    answers = {p: {json.dumps([(t["task"], t["value"], t["correct"], t["n"]) for t in r["tasks"]]) for r in by[p]}
               for p in by}
    identical = len(answers["in-memory"] | answers["streamed"]) == 1
    summary = [{"path": p, "open_s": med[p]["open_s"], "eval_s": med[p]["eval_s"],
                "rss_before_eval_MiB": med[p]["rss_before_eval"] / 2**20,
                "eval_peak_rss_MiB": med[p]["eval_peak_rss"] / 2**20,
                "open_peak_rss_MiB": med[p]["open_peak_rss"] / 2**20,
                "process_peak_MiB": max(med[p]["eval_peak_rss"], med[p]["open_peak_rss"]) / 2**20,
                "wall_s": med[p]["wall_s"]} for p in by]
    tasks = [{"task": t["task"], "n": t["n"], "acc in-memory": t["value"],
              "acc streamed": s["value"], "correct": t["correct"], "ci95": "[%.3f, %.3f]" % tuple(t["ci95"]),
              "same": (t["value"], t["correct"]) == (s["value"], s["correct"]),
              "streamed activations_MiB": (s["streamed"] or {}).get("activations_bytes", 0) / 2**20,
              "streamed batches": (s["streamed"] or {}).get("batches")}
             for t, s in zip(by["in-memory"][0]["tasks"], by["streamed"][0]["tasks"])]
    print()
    print_table(summary, ["path", "open_s", "eval_s", "rss_before_eval_MiB", "eval_peak_rss_MiB", "open_peak_rss_MiB",
                          "process_peak_MiB", "wall_s"])
    print()
    print_table(tasks, ["task", "n", "acc in-memory", "acc streamed", "correct", "ci95", "same",
                        "streamed activations_MiB", "streamed batches"])
    ratio = med["streamed"]["eval_s"] / med["in-memory"]["eval_s"]
    print(f"\nidentical accuracies in every run: {identical}; streamed / in-memory evaluation time {ratio:.2f}x; "
          f"wall {wall:.0f} s")
    save("streamed_tasks", {"model": MODEL, "tasks": args.tasks, "limit": args.limit, "batch_size": args.batch_size,
                            "num_fewshot": 0, "data": "kenprune local tasks (test splits, see evaluate/tasks.py)",
                            "device": "cpu", "threads": "OMP_NUM_THREADS=1, torch.set_num_threads(1)",
                            "reps": args.reps, "order": "alternating in-memory / streamed, medians",
                            "peak": "VmHWM reset after the model is open: the evaluation's own peak",
                            "seed": "lm-eval's (simple_evaluate seeds 0/1234)", "lm_eval": lm_eval_version(),
                            "torch": torch.__version__},
         rows, summary=summary, tasks=tasks, identical=identical, time_ratio=ratio, loadavg=load, wall_seconds=wall)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
