"""KEN quality: does KEN match the fine-tuned model with >= 25% fewer stored parameters?

Pairs: minilm-l6 fine-tuned on pang-lee and on newsgroups-mini (held-out accuracy), smollm2-135m
adapted on lee (held-out perplexity). For each: pre-trained, fine-tuned, and at k in {10, 25, 50}%
of each row: KEN and two baselines with the same kept count per row (largest |fine-tuned -
pre-trained|, random). Columns: quality, stored parameters, subnetwork file size, selection time.
Fine-tuned models are cached under $KENPRUNE_CACHE/ken-bench (keyed by setup, steps and seed).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from kenprune import provenance
from kenprune.evaluate import evaluate
from kenprune.fileio import write_json
from kenprune.jobs.finetune import finetune
from kenprune.ken.pair import finetuned_bytes, ken_models, load_pair
from kenprune.models.loading import LoadedModel
from kenprune.settings import FINETUNE_EVALUATION, Evaluation
from kenprune.ken.apply import unique_parameters
from kenprune.ken.baselines import delta_scores, random_rows, topk_rows
from kenprune.ken.subnetwork import write_subnetwork

ROOT = Path(__file__).resolve().parents[1]
# name: (model, data, heldout, finetune kwargs full, finetune steps quick, lower-is-better);
# eval_windows: the fine-tune's own held-out evaluation windows (its Evaluation, not a FinetuneSettings field)
SETUPS = {
    "minilm-l6/pang-lee": ("minilm-l6", "pang-lee", "pang-lee:test",
                           dict(steps=40, batch_size=16, seqlen=64, lr=1e-4), 40, False),
    "minilm-l6/newsgroups-mini": ("minilm-l6", "newsgroups-mini", "newsgroups-mini:test",
                                  dict(steps=30, batch_size=8, seqlen=128, lr=1e-4), 16, False),
    "smollm2-135m/lee": ("smollm2-135m", "lee", "lee:test",
                         dict(steps=20, batch_size=4, seqlen=128, lr=3e-5, eval_windows=4), 6, True),
}
KS = (0.10, 0.25, 0.50)


def finetuned_folder(name: str, quick: bool, seed: int) -> Path:
    model, data, _, kwargs, quick_steps, _ = SETUPS[name]
    kwargs = {**kwargs, "steps": quick_steps if quick else kwargs["steps"]}
    folder = provenance.cache_root() / "ken-bench" / f"{name.replace('/', '-')}-s{kwargs['steps']}-seed{seed}"
    if not (folder / "kenprune.json").exists():
        print(f"fine-tuning {name} ({kwargs['steps']} steps) -> {folder}", flush=True)
        evaluation = FINETUNE_EVALUATION
        if "eval_windows" in kwargs:
            evaluation = evaluation.replace(windows=kwargs.pop("eval_windows"))
        finetune(model, data, out=folder, seed=seed, evaluation=evaluation, progress=False, **kwargs)
    return folder


def run_setup(name: str, ks: tuple[float, ...], quick: bool, seed: int, windows: int) -> list[dict]:
    _, _, heldout, _, _, lower_better = SETUPS[name]
    pre, ft = load_pair(None, str(finetuned_folder(name, quick, seed)))
    protocol = Evaluation(data=heldout, seqlen=256, windows=windows)

    def quality(model: torch.nn.Module) -> float:
        loaded = LoadedModel(model, ft.tokenizer, ft.name, ft.source, ft.task, ft.bos)
        return evaluate(loaded, protocol, progress=False).value

    pre_params, _ = unique_parameters(pre.model)
    ft_params, _ = unique_parameters(ft.model)
    total = sum(p.numel() for p in ft_params.values())
    rows = [{"setup": name, "method": "pre-trained", "k": None, "quality": quality(pre.model), "stored": 0,
             "bytes": 0, "seconds": 0.0},
            {"setup": name, "method": "fine-tuned", "k": None, "quality": quality(ft.model), "stored": total,
             "bytes": finetuned_bytes(ft), "seconds": 0.0}]
    scores = delta_scores(pre_params, ft_params)
    methods = {"KEN": {}, "|delta| top-k": {"mask_fn": topk_rows, "scores": scores},
               "random": {"mask_fn": random_rows(seed)}}
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            for method, kwargs in methods.items():
                start = time.perf_counter()
                run = ken_models(pre, ft, k, progress=False, **kwargs)
                seconds = time.perf_counter() - start
                path = Path(tmp) / "sub.safetensors"
                write_subnetwork(path, run.subnetwork)
                stored = run.selection.kept() + sum(t.numel() for t in run.subnetwork.full.values())
                rows.append({"setup": name, "method": method, "k": k, "quality": quality(run.optimized),
                             "stored": stored, "bytes": path.stat().st_size, "seconds": seconds})
                print_row(rows[-1], total, lower_better, flush=True)
                del run
    for r in rows:
        r["metric"] = "perplexity" if lower_better else "accuracy"
        r["stored_fraction"] = r["stored"] / total
    return rows


def print_row(r: dict, total: int, lower_better: bool, flush: bool = False) -> None:
    k = "-" if r["k"] is None else f"{r['k']:.0%}"
    q = f"{r['quality']:.2f} ppl" if lower_better else f"{r['quality']:.3f} acc"
    print(f"{r['setup']:<26} {r['method']:<14} {k:>4} {q:>12} {r['stored']:>12,} ({r['stored'] / total:6.1%}) "
          f"{r['bytes'] / 2**20:8.2f} MiB {r['seconds']:7.1f} s", flush=flush)


def verdict(rows: list[dict]) -> list[str]:
    """Per setup: the KEN settings that match the fine-tuned quality while storing <= 75% of parameters."""
    lines = []
    for name in dict.fromkeys(r["setup"] for r in rows):
        mine = [r for r in rows if r["setup"] == name]
        tuned = next(r for r in mine if r["method"] == "fine-tuned")
        lower = tuned["metric"] == "perplexity"
        good = [r for r in mine if r["method"] == "KEN" and r["stored_fraction"] <= 0.75 and
                (r["quality"] <= tuned["quality"] if lower else r["quality"] >= tuned["quality"])]
        if good:
            ks = ", ".join(f"{r['k']:.0%} ({r['quality']:.3f})" for r in good)
            lines.append(f"{name}: claim HOLDS at k = {ks} (fine-tuned {tuned['quality']:.3f})")
        else:
            best = min((r for r in mine if r["method"] == "KEN"), key=lambda r: r["quality"] if lower else -r["quality"])
            lines.append(f"{name}: claim does NOT hold: best KEN {best['quality']:.3f} at k = {best['k']:.0%} vs "
                         f"fine-tuned {tuned['quality']:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer fine-tuning steps; smollm2 at k=25%% only")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", type=int, default=8, help="held-out perplexity windows of 256 tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ken_quality.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict] = []
    for name in args.setups:
        ks = (0.25,) if args.quick and name.startswith("smollm2") else KS
        windows = 4 if args.quick else args.windows
        rows += run_setup(name, ks, args.quick, args.seed, windows)
    print(f"\n{'setup':<26} {'method':<14} {'k':>4} {'quality':>12} {'stored params':>22} {'file':>12} {'time':>9}")
    for name in args.setups:
        mine = [r for r in rows if r["setup"] == name]
        total = next(r for r in mine if r["method"] == "fine-tuned")["stored"]
        for r in mine:
            print_row(r, total, r["metric"] == "perplexity")
    lines = verdict(rows)
    print("\n" + "\n".join(lines))
    write_json(args.out, {"benchmark": "ken_quality", "quick": args.quick, "seed": args.seed, "rows": rows,
                          "verdict": lines, "seqlen": 256, "setups": {k: {"model": v[0], "data": v[1], "heldout": v[2]}
                                                                      for k, v in SETUPS.items()},
                          **provenance.record()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
