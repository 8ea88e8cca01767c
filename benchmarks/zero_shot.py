"""Zero-shot task accuracy (lm-evaluation-harness on kenprune's offline tasks) of pruned smollm2-135m.

Claims tested (the papers' orderings): dense > SparseGPT ~ Wanda > magnitude; at 70 %, searched DSA >= OWL >
uniform in mean accuracy. Every model is produced by kenprune's own prune job (settings below), its tasks
scored by the job's zero-shot evaluation (`Evaluation.tasks`), next to wiki:test perplexity.

Sized for a shared 2-core CPU: each task is capped at its first --limit items (kenprune writes every task's
items in a seeded shuffle, so the first N are a uniform sample), calibration is --nsamples x --seqlen. The
result JSON is rewritten after every row and a rerun resumes (rows already there are kept) unless --fresh.

    python benchmarks/zero_shot.py [--limit 50] [--minutes 25] [--gemma]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, save  # noqa: E402

# Wanda at 70 % with the DSA function benchmarks/allocation.py's evolutionary search found (allocation.json)
DSA_70 = "dsa:exp|median|square|tanh"
ROWS = [  # (label, method, sparsity, pattern, allocation), in the order they run
    ("dense", None, None, None, None),
    ("wanda 50%", "wanda", 0.5, None, None),
    ("sparsegpt 50%", "sparsegpt", 0.5, None, None),
    ("magnitude 50%", "magnitude", 0.5, None, None),
    ("wanda 70%", "wanda", 0.7, None, None),
    ("wanda 70% + OWL", "wanda", 0.7, None, "owl"),
    ("wanda 70% + DSA", "wanda", 0.7, None, DSA_70),
    ("sparsegpt 70%", "sparsegpt", 0.7, None, None),
    ("magnitude 70%", "magnitude", 0.7, None, None),
    ("wanda 2:4", "wanda", None, "2:4", None),
    ("sparsegpt 2:4", "sparsegpt", None, "2:4", None),
    ("magnitude 2:4", "magnitude", None, "2:4", None),
]


def entries(record) -> dict:
    """Perplexity, mean and per-task accuracy (with intervals) of the record's after-model."""
    from kenprune.evaluate import TASK_METRIC, ZERO_SHOT

    out: dict = {"tasks": {}}
    for q in record.quality:
        if q.role != "after":
            continue
        if q.metric == "perplexity":
            out["perplexity"] = q.value
        elif q.metric == ZERO_SHOT:
            out["mean"], out["mean_ci95"] = q.value, q.protocol["mean_ci95"]
            out["protocol"] = {k: v for k, v in q.protocol.items() if k != "tasks"}
        elif q.metric == TASK_METRIC:
            p = q.protocol
            out["tasks"][p["task"]] = {k: p.get(k) for k in ("metric", "value", "metrics", "n", "n_available",
                                                              "correct", "ci95", "chance", "seconds",
                                                              "data_sha256", "yaml_sha256")}
    return out


def run_row(label, method, sparsity, pattern, allocation, args, evaluation) -> dict:
    from kenprune.jobs import eval as eval_job
    from kenprune.jobs import prune as prune_job
    from kenprune.settings import Calibration, PruneSettings

    load_before = os.getloadavg()
    start = time.perf_counter()
    if method is None:
        record = eval_job.run(args.model, evaluation, progress=False)
    else:
        record = prune_job.run(args.model, PruneSettings(method=method, sparsity=sparsity, pattern=pattern,
                                                          allocation=allocation),
                               calibration=Calibration(samples=args.nsamples, seqlen=args.seqlen, seed=0),
                               evaluation=evaluation.replace(before=False), progress=False)
    row = {"label": label, "method": method or "dense", "sparsity": record.sparsity if method else 0.0,
           "pattern": pattern, "allocation": allocation, **entries(record),
           "seconds": {**record.seconds(), "total": time.perf_counter() - start},
           "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())}
    return row


def subset(row: dict, names: list[str]) -> dict | None:
    """A row of an earlier run restricted to `names` (same items: same limit), its mean recomputed; None when
    it lacks one of them."""
    from kenprune.evaluate.zero_shot import mean_interval

    if not all(n in row["tasks"] for n in names):
        return None
    tasks = {n: row["tasks"][n] for n in names}
    mean = sum(t["value"] for t in tasks.values()) / len(tasks)
    return {**row, "tasks": tasks, "mean": mean, "mean_ci95": list(mean_interval(list(tasks.values()))),
            "reused": "tasks of an earlier run of this script with the same --limit (identical items)"
            if set(tasks) != set(row["tasks"]) else row.get("reused")}


def table(rows: list[dict]) -> list[dict]:
    names = list(dict.fromkeys(t for r in rows for t in r["tasks"]))
    out = []
    for r in rows:
        cells = {"model": r["label"], "ppl": r.get("perplexity")}
        for t in names:
            x = r["tasks"].get(t)
            cells[t.replace("kenprune_", "")] = (f"{x['value']:.3f} [{x['ci95'][0]:.2f},{x['ci95'][1]:.2f}]"
                                                 if x else None)
        cells["mean"] = f"{r['mean']:.3f} [{r['mean_ci95'][0]:.3f},{r['mean_ci95'][1]:.3f}]"
        cells["s"] = round(r["seconds"]["total"])
        out.append(cells)
    return out


def ordering(rows: list[dict], better: str, worse: str) -> dict | None:
    """Is `better`'s mean above `worse`'s, and do their intervals overlap?"""
    by = {r["label"]: r for r in rows}
    if better not in by or worse not in by:
        return None
    a, b = by[better], by[worse]
    overlap = not (a["mean_ci95"][0] > b["mean_ci95"][1] or b["mean_ci95"][0] > a["mean_ci95"][1])
    return {"claim": f"{better} > {worse}", "holds": a["mean"] > b["mean"], "difference": a["mean"] - b["mean"],
            "intervals_overlap": overlap}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default="default", help="task selection (default: kenprune's default suite)")
    parser.add_argument("--limit", type=int, default=50, help="items per task (the first N of its seeded shuffle)")
    parser.add_argument("--nsamples", type=int, default=32, help="calibration windows")
    parser.add_argument("--seqlen", type=int, default=256, help="calibration window length")
    parser.add_argument("--eval-windows", type=int, default=8, help="wiki:test perplexity windows of 512")
    parser.add_argument("--batch-size", type=int, default=8, help="lm-eval batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=25.0, help="start no new row after this much time")
    parser.add_argument("--rows", default=None, help="comma-separated labels to run (default: all)")
    parser.add_argument("--name", default="zero_shot", help="results file name")
    parser.add_argument("--fresh", action="store_true", help="ignore rows of an earlier run")
    parser.add_argument("--merge", default=None, help="also take the rows of results/NAME.json (a run of the same "
                                                      "limit on other rows, e.g. in parallel)")
    parser.add_argument("--gemma", action="store_true", help="gemma3-270m dense vs Wanda 50 % instead")
    args = parser.parse_args()

    import torch

    from kenprune.evaluate.zero_shot import lm_eval_version, select_tasks
    from kenprune.settings import Evaluation

    torch.set_num_threads(args.threads)
    rows_spec = ROWS if not args.gemma else ROWS[:2]
    if args.gemma:
        args.model, args.name = "gemma3-270m", args.name if args.name != "zero_shot" else "zero_shot_gemma"
    if args.rows:
        wanted = [x.strip() for x in args.rows.split(",")]
        rows_spec = [r for r in rows_spec if r[0] in wanted]
    evaluation = Evaluation(data="wiki:test", windows=args.eval_windows, tasks=args.tasks, task_limit=args.limit,
                            task_batch_size=args.batch_size).check()
    path = RESULTS / f"{args.name}.json"
    done: list[dict] = []
    if path.exists() and not args.fresh:
        old = json.loads(path.read_text())
        if old.get("config", {}).get("limit") == args.limit:
            done = [r for r in (subset(row, select_tasks(args.tasks).names) for row in old["rows"]) if r]
    if args.merge:
        other = json.loads((RESULTS / f"{args.merge}.json").read_text())
        if other.get("config", {}).get("limit") == args.limit:
            done += [r for r in (subset(row, select_tasks(args.tasks).names) for row in other["rows"])
                     if r and not any(r["label"] == d["label"] for d in done)]
    config = {"model": args.model, "tasks": args.tasks, "limit": args.limit, "calibration": "wiki:calib",
              "nsamples": args.nsamples, "seqlen": args.seqlen, "seed": 0,
              "perplexity": f"wiki:test, {args.eval_windows} windows x 512", "lm_eval": lm_eval_version(),
              "batch_size": args.batch_size, "threads": args.threads, "num_fewshot": 0,
              "selection": list(select_tasks(args.tasks).names)}
    start = time.perf_counter()
    skipped = []
    for spec in rows_spec:
        if any(r["label"] == spec[0] for r in done):
            continue
        if (time.perf_counter() - start) / 60 > args.minutes:
            skipped.append(spec[0])
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {spec[0]} ...", file=sys.stderr, flush=True)
        done.append(run_row(*spec, args, evaluation))
        print(f"    mean {done[-1]['mean']:.3f}, ppl {done[-1].get('perplexity', float('nan')):.1f}, "
              f"{done[-1]['seconds']['total']:.0f} s", file=sys.stderr, flush=True)
        save(args.name, config, done, complete=False, skipped=skipped)
    print_table(table(done), list(table(done)[0]) if done else [])
    claims = [c for c in (ordering(done, "dense", "sparsegpt 50%"), ordering(done, "dense", "wanda 50%"),
                          ordering(done, "sparsegpt 50%", "magnitude 50%"), ordering(done, "wanda 50%", "magnitude 50%"),
                          ordering(done, "sparsegpt 50%", "wanda 50%"), ordering(done, "sparsegpt 70%", "wanda 70%"),
                          ordering(done, "wanda 70%", "magnitude 70%"), ordering(done, "sparsegpt 2:4", "wanda 2:4"),
                          ordering(done, "wanda 2:4", "magnitude 2:4"),
                          ordering(done, "wanda 70% + DSA", "wanda 70% + OWL"),
                          ordering(done, "wanda 70% + OWL", "wanda 70%"), ordering(done, "wanda 70% + DSA", "wanda 70%"))
              if c]
    print()
    for c in claims:
        print(f"{c['claim']:40s} {'yes' if c['holds'] else 'no':4s} diff {c['difference']:+.3f}"
              f"{'  (inside the intervals)' if c['intervals_overlap'] else ''}")
    save(args.name, config, done, complete=not skipped and len(done) == len(rows_spec), skipped=skipped,
         claims=claims)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
