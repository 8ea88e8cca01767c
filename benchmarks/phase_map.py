"""Prunability phase maps (the three-regime model) with `kenprune phase-map`'s job, kept CPU-small.

  minilm-l6 fine-tuned as a pang-lee classifier (the KEN pairs' setting) for increasing steps, pruned by
  magnitude at densities 0.9..0.3, recovered for a few masked steps; accuracy on the whole pang-lee test
  split (40 sentences: Wilson 95 % intervals) and the loss barrier to the dense parent;
  smollm2-135m adapted on lee for increasing steps (`--lm`), Wanda, no recovery, perplexity on lee:test windows.

For each density the script reports the direction of quality along the temperature-like axis, and whether
it changes sign between densities (a transition like the paper's: more training helps pruning at one load
and hurts it at another).

    python benchmarks/phase_map.py            # minilm-l6 (+ smollm2 with --lm)
    python benchmarks/phase_map.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, save  # noqa: E402

from kenprune.evaluate.intervals import wilson  # noqa: E402
from kenprune.jobs.phase_map import run  # noqa: E402
from kenprune.settings import Output, PhaseMapSettings  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[0, 10, 20, 40])
    p.add_argument("--densities", type=float, nargs="+", default=[0.9, 0.7, 0.5, 0.3])
    p.add_argument("--recover-steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--data", default="pang-lee", help="the encoder map's labelled corpus (austen-novels: 1,496 test "
                   "passages, intervals narrow enough to see a trend)")
    p.add_argument("--eval-examples", type=int, default=40, help="the encoder map's held-out examples")
    p.add_argument("--alphas", type=int, default=11, help="points on the line from pruned to dense (encoder map)")
    p.add_argument("--lm", action="store_true", help="also smollm2-135m adapted on lee")
    p.add_argument("--lm-only", action="store_true", help="only the smollm2-135m map")
    p.add_argument("--lm-steps", type=int, nargs="+", default=[0, 10, 20])
    p.add_argument("--lm-eval-windows", type=int, default=4, help="lee:test windows of 128 tokens (smollm2 map)")
    p.add_argument("--lm-alphas", type=int, default=6)
    p.add_argument("--lm-lr", type=float, default=None, help="smollm2 adaptation learning rate (default: the job's)")
    p.add_argument("--name", default="phase_map", help="results/NAME.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.steps, args.densities, args.recover_steps, args.lm_steps = [0, 5], [0.9, 0.5], 1, [0, 2]
    return args


def trend(cells: list[dict], density: float, higher_is_better: bool) -> dict:
    """Quality along the temperature-like axis at one density: first -> last, and its direction."""
    row = [c for c in cells if c["density"] == density]
    first, last = row[0]["quality"], row[-1]["quality"]
    better = (last > first) if higher_is_better else (last < first)
    return {"density": density, "first": first, "last": last,
            "direction": "flat" if first == last else "improves" if better else "worsens"}


def one_map(name: str, model: str, settings: PhaseMapSettings) -> dict:
    start = time.perf_counter()
    record = run(model, settings, output=Output(None), progress=False)
    d = record.details
    rows = []
    for c in d["cells"]:
        row = {"map": name, "temperature": c["temperature"], "density": c["density"], "quality": c["quality"],
               "dense": c["dense_quality"], "barrier": c["barrier"], "at alpha": c["barrier_alpha"],
               "CKA": c["similarity"], "regime": c["regime"]}
        if d["quality_metric"] == "accuracy":
            n = d["held_out"]["examples"]
            row["ci95"] = "[%.3f, %.3f]" % wilson(round(c["quality"] * n), n)
        rows.append(row)
    trends = [trend(d["cells"], x, d["higher_is_better"]) for x in d["densities"]]
    directions = {t["direction"] for t in trends} - {"flat"}
    return {"rows": rows, "metric": d["quality_metric"], "trends": trends,
            "transition": len(directions) > 1, "seconds": time.perf_counter() - start,
            "held_out": d["held_out"], "training": {k: v for k, v in d["training"].items() if k != "loss_curve"},
            "loss_curve": d["training"].get("loss_curve"), "settings": settings.to_dict(), "model": record.model}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), os.getloadavg()
    maps = {}
    if not args.lm_only:
        maps[f"minilm-l6 / {args.data}"] = one_map("minilm", "minilm-l6", PhaseMapSettings(
            data=args.data, steps=tuple(args.steps), densities=tuple(args.densities), method="magnitude",
            recover_steps=args.recover_steps, batch_size=args.batch_size, seqlen=128, eval_examples=args.eval_examples,
            alphas=args.alphas, seed=args.seed))
    if args.lm or args.lm_only:
        maps["smollm2-135m / lee"] = one_map("smollm2", "smollm2-135m", PhaseMapSettings(
            data="lee", steps=tuple(args.lm_steps), densities=tuple(args.densities), method="wanda", recover_steps=0,
            batch_size=2, seqlen=128, eval_examples=args.lm_eval_windows, alphas=args.lm_alphas, calib_samples=4,
            lr=args.lm_lr, seed=args.seed))
    rows = [r for m in maps.values() for r in m["rows"]]
    print_table(rows, ["map", "temperature", "density", "quality", "ci95", "dense", "barrier", "at alpha", "CKA",
                       "regime"])
    for name, m in maps.items():
        print(f"\n{name} ({m['metric']}; {m['seconds']:.0f} s): "
              + "; ".join(f"d={t['density']:g} {t['first']:.3f}->{t['last']:.3f} {t['direction']}"
                          for t in m["trends"])
              + f"; transition (direction changes with density): {m['transition']}")
    save(args.name if not args.quick else f"{args.name}_quick",
         {"maps": {k: {"model": v["model"]["name"], "settings": v["settings"], "held_out": v["held_out"],
                       "training": v["training"]} for k, v in maps.items()},
          "threads": args.threads, "seed": args.seed}, rows,
         maps={k: {x: v[x] for x in ("metric", "trends", "transition", "seconds", "loss_curve")}
               for k, v in maps.items()},
         loadavg={"before": load_before, "after": os.getloadavg()}, wall_seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
