"""Federated calibration on smollm2-135m: three non-IID clients, merged statistics vs centralized vs each alone.

Clients: wiki, lee and newsgroups-mini (calib splits, `--samples` windows of `--seqlen` tokens each, seeded).
For Wanda and SparseGPT at 50 % and 70 %:
  centralized  the ordinary engine (kenprune.engine, InputStats float32 running means) on the union of windows
  merged       kenprune.federated.prune_rounds: per-block rounds, float64 sums merged (weighting tokens)
  <client>     the ordinary engine on that client's windows alone
Perplexity on each domain's test split (`--eval-windows` windows of `--eval-seqlen`, 95 % interval over
windows), the share of weights where merged and centralized masks agree, the largest weight difference,
and each client's per-layer mask agreement with the merged masks. Then Ray (clients as actors on
`--workers` workers) against in-process clients, alternated `--repeats` times, medians.

    python benchmarks/federated.py            # ~10 min on a loaded 2-core machine
    python benchmarks/federated.py --quick    # smoke run
    python benchmarks/federated.py --structured [federated_structured.py's options]   # structured importances
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, save  # noqa: E402

from kenprune.data.corpora import join_text, load_documents, tokenize_stream  # noqa: E402
from kenprune.data.windows import calibration_windows  # noqa: E402
from kenprune.engine.elementwise import prune_model  # noqa: E402
from kenprune.evaluate.language_model import make_windows, resolve_bos, window_nll  # noqa: E402
from kenprune.federated import ClientData, prune_rounds  # noqa: E402
from kenprune.models.loading import load_model  # noqa: E402

DOMAINS = ("wiki", "lee", "newsgroups-mini")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--methods", nargs="+", default=["wanda", "sparsegpt"])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7])
    p.add_argument("--samples", type=int, default=16, help="calibration windows per client")
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--eval-windows", type=int, default=8)
    p.add_argument("--eval-seqlen", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternating Ray / in-process timing rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process (Ray actors get 1 each)")
    p.add_argument("--quick", action="store_true", help="4 windows of 128 per client, wanda 50 % only")
    p.add_argument("--exactness", default=None, metavar="METHOD@SPARSITY",
                   help="only the exactness check of one configuration -> results/federated_exactness.json")
    p.add_argument("--allocation", default=None, metavar="METHOD@SPARSITY@SPEC",
                   help="only a federated allocation (e.g. wanda@0.7@owl) against the centralized one, and the "
                        "federated uniform run -> results/federated_allocation.json")
    args = p.parse_args()
    if args.quick:
        args.samples, args.seqlen, args.eval_windows, args.methods, args.sparsities, args.repeats = \
            4, 128, 2, ["wanda"], [0.5], 1
    return args


def domain_data(loaded, args) -> tuple[list[ClientData], dict[str, torch.Tensor], bool | None]:
    """One client per domain (`args.samples` calibration windows of `args.seqlen`, `args.seed`), each domain's
    test windows (`args.eval_windows` of `args.eval_seqlen`) and the BOS policy they were cut with."""
    clients = [ClientData(calibration_windows(loaded.tokenizer, f"{d}:calib", nsamples=args.samples,
                                              seqlen=args.seqlen, seed=args.seed), f"{d}:calib", args.seed, d)
               for d in DOMAINS]
    bos = resolve_bos(loaded, "auto")
    evals = {d: make_windows(tokenize_stream(loaded.tokenizer, join_text(load_documents(f"{d}:test"))),
                             args.eval_seqlen, bos, args.eval_windows) for d in DOMAINS}
    return clients, evals, bos


def domain_ppl(model, windows: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Perplexity per domain with a 95 % interval over windows (per-window mean NLL, normal approximation)."""
    out = {}
    with torch.no_grad():
        for name, w in windows.items():
            per_token = window_nll(model, w) / (w.shape[1] - 1)
            mean = float(per_token.mean())
            half = 1.96 * float(per_token.std()) / math.sqrt(len(per_token)) if len(per_token) > 1 else float("nan")
            out[name] = {"ppl": math.exp(mean), "lo": math.exp(mean - half), "hi": math.exp(mean + half)}
    return out


def masks(model) -> dict[str, torch.Tensor]:
    return {n: p == 0 for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2}


def compare(a, b) -> dict[str, float]:
    """Mask agreement (share of weights with the same zero pattern) and the largest weight difference."""
    ma, mb = masks(a), masks(b)
    same = sum(int((ma[n] == mb[n]).sum()) for n in ma)
    total = sum(ma[n].numel() for n in ma)
    pb = dict(b.named_parameters())
    diff = max(float((p.detach() - pb[n].detach()).abs().max()) for n, p in a.named_parameters())
    return {"mask_agreement": same / total, "masks_differing": total - same, "max_weight_diff": diff}


def per_block_disagreement(a, b) -> list[int]:
    """Masks that differ, per block, in block order (where a divergence starts and how it spreads)."""
    ma, mb = masks(a), masks(b)
    out: dict[int, int] = {}
    for n in ma:
        block = int(n.split(".layers.")[1].split(".")[0])
        out[block] = out.get(block, 0) + int((ma[n] != mb[n]).sum())
    return [out[k] for k in sorted(out)]


def exactness(dense, clients, union, method: str, sparsity: float) -> dict:
    """Where merged and centralized differ, and why: block 0's statistics (identical inputs) in both arithmetics,
    and per-block mask disagreement of merged vs the engine (float32 running mean) and vs the union summed like
    the clients (float64 sums, one client holding every window)."""
    from kenprune.engine.sequential import capture_block_inputs, sequential_blocks
    from kenprune.federated import ShardStats, merge_layers

    statistic = "hessian" if method == "sparsegpt" else "norms"
    step = next(sequential_blocks(dense, capture_block_inputs(dense, union), recompute=False, progress=False))
    engine = step.collect(statistic)
    parts = []
    for c in clients:
        s = next(sequential_blocks(dense, capture_block_inputs(dense, c.windows), recompute=False, progress=False))
        parts.append(s.collect(statistic, ShardStats))
    merged = {n: v.to_input_stats() for n, v in merge_layers(parts).items()}
    rel = max(float(((merged[n].sq_sum - engine[n].sq_sum).abs() / engine[n].sq_sum.abs().clamp_min(1e-30)).max())
              for n in engine)
    out = {"block0_norms_max_relative_diff": rel}
    if statistic == "hessian":
        out["block0_hessian_max_abs_diff"] = max(float((merged[n].hessian - engine[n].hessian).abs().max())
                                                 for n in engine)
    models = {}
    for name, run in (("engine", lambda m: prune_model(m, union, method=method, sparsity=sparsity, progress=False)),
                      ("union_float64", lambda m: prune_rounds(m, [ClientData(union, "union")], method=method,
                                                               sparsity=sparsity, agreement=False, progress=False)),
                      ("merged", lambda m: prune_rounds(m, clients, method=method, sparsity=sparsity,
                                                        agreement=False, progress=False))):
        models[name] = copy.deepcopy(dense)
        run(models[name])
    out["merged_vs_engine_per_block"] = per_block_disagreement(models["merged"], models["engine"])
    out["merged_vs_union_float64_per_block"] = per_block_disagreement(models["merged"], models["union_float64"])
    out["merged_vs_union_float64"] = compare(models["merged"], models["union_float64"])
    out["merged_vs_engine"] = compare(models["merged"], models["engine"])
    return out


def main() -> None:
    if "--structured" in sys.argv[1:]:  # federated structured importances (benchmarks/federated_structured.py)
        from federated_structured import main as structured

        return structured([a for a in sys.argv[1:] if a != "--structured"])
    args = parse_args()
    if args.exactness:
        return exactness_only(args)
    if args.allocation:
        return allocation_only(args)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_before = os.getloadavg()
    loaded = load_model(args.model)
    dense = loaded.model
    clients, evals, bos = domain_data(loaded, args)
    union = torch.cat([c.windows for c in clients])
    rows, details = [], {}
    dense_ppl = domain_ppl(dense, evals)
    rows.append({"method": "dense", "sparsity": 0.0, "calibration": "-",
                 **{f"ppl {d}": v["ppl"] for d, v in dense_ppl.items()}})
    for method in args.methods:
        for sparsity in args.sparsities:
            key = f"{method}@{sparsity}"
            models, seconds = {}, {}
            t = time.perf_counter()
            models["centralized"] = copy.deepcopy(dense)
            prune_model(models["centralized"], union, method=method, sparsity=sparsity, progress=False)
            seconds["centralized"] = time.perf_counter() - t
            t = time.perf_counter()
            models["merged"] = copy.deepcopy(dense)
            report = prune_rounds(models["merged"], clients, method=method, sparsity=sparsity, progress=False)
            seconds["merged"] = time.perf_counter() - t
            fed = report["federated"]
            vs = compare(models["centralized"], models["merged"])
            results = {"merged_vs_centralized": vs, "agreement": fed["agreement"]["clients"],
                       "seconds": seconds, "ppl": {}}
            for name in ("centralized", "merged"):
                results["ppl"][name] = domain_ppl(models.pop(name), evals)
            for c in clients:
                t = time.perf_counter()
                alone = copy.deepcopy(dense)
                prune_model(alone, c.windows, method=method, sparsity=sparsity, progress=False)
                seconds[f"{c.name} alone"] = time.perf_counter() - t
                results["ppl"][f"{c.name} alone"] = domain_ppl(alone, evals)
                del alone
            for name, ppl in results["ppl"].items():
                rows.append({"method": method, "sparsity": sparsity, "calibration": name,
                             **{f"ppl {d}": v["ppl"] for d, v in ppl.items()},
                             "agree w/ merged": fed["agreement"]["clients"].get(name.replace(" alone", "")),
                             "s": seconds[name]})
            details[key] = results
            print(f"{key}: merged vs centralized {vs}, {time.perf_counter() - start:.0f} s", flush=True)
    # Ray actors against in-process clients, alternated; same result required
    timing = {"ray": [], "sequential": []}
    reference = None
    for r in range(args.repeats):
        for mode in ("ray", "sequential") if r % 2 == 0 else ("sequential", "ray"):
            model = copy.deepcopy(dense)
            t = time.perf_counter()
            prune_rounds(model, clients, method=args.methods[0], sparsity=args.sparsities[0], agreement=False,
                         workers=args.workers if mode == "ray" else 1,
                         model_ref=args.model if mode == "ray" else None, progress=False)
            timing[mode].append(time.perf_counter() - t)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            if reference is None:
                reference = state
            else:
                assert all(torch.equal(reference[k], state[k]) for k in state), "Ray and in-process results differ"
            del model
    ray_table = {m: {"seconds": v, "median": statistics.median(v)} for m, v in timing.items()}
    ray_table["speedup"] = ray_table["sequential"]["median"] / ray_table["ray"]["median"]
    ray_table["what"] = (f"{args.methods[0]} {args.sparsities[0]}: {len(clients)} clients as Ray actors on "
                         f"{args.workers} workers (each loads its own model: included) vs in-process clients sharing "
                         f"the server's model; identical weights asserted")
    columns = ["method", "sparsity", "calibration", *[f"ppl {d}" for d in DOMAINS], "agree w/ merged", "s"]
    print_table(rows, columns)
    print("\nmerged vs centralized:")
    print_table([{"run": k, **v["merged_vs_centralized"]} for k, v in details.items()],
                ["run", "mask_agreement", "masks_differing", "max_weight_diff"])
    print(f"\nRay {args.workers} workers: median {ray_table['ray']['median']:.1f} s; in-process: median "
          f"{ray_table['sequential']['median']:.1f} s; speed-up {ray_table['speedup']:.2f}x")
    config = {"model": args.model, "clients": [c.identity() for c in clients], "calibration":
              {"windows_per_client": args.samples, "seqlen": args.seqlen, "seed": args.seed},
              "evaluation": {"splits": [f"{d}:test" for d in DOMAINS], "windows": args.eval_windows,
                             "seqlen": args.eval_seqlen, "bos": bos, "interval": "95 % over windows, normal approx."},
              "methods": args.methods, "sparsities": args.sparsities, "weighting": "tokens",
              "threads": args.threads, "workers": args.workers, "repeats": args.repeats}
    save("federated" if not args.quick else "federated_quick", config, rows, details=details,
         dense=dense_ppl, ray=ray_table, loadavg={"before": load_before, "after": os.getloadavg()},
         wall_seconds=time.perf_counter() - start)


def exactness_only(args) -> None:
    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), os.getloadavg()
    loaded = load_model(args.model)
    clients = [ClientData(calibration_windows(loaded.tokenizer, f"{d}:calib", nsamples=args.samples,
                                              seqlen=args.seqlen, seed=args.seed), f"{d}:calib", args.seed, d)
               for d in DOMAINS]
    method, sparsity = args.exactness.split("@")
    result = exactness(loaded.model, clients, torch.cat([c.windows for c in clients]), method, float(sparsity))
    print(result)
    save("federated_exactness", {"model": args.model, "method": method, "sparsity": float(sparsity),
                                 "clients": [c.identity() for c in clients], "threads": args.threads}, [result],
         loadavg={"before": load_before, "after": os.getloadavg()}, wall_seconds=time.perf_counter() - start)


def allocation_only(args) -> None:
    """A federated allocation (scores from a dense round of merged statistics) against the centralized allocation
    (the engine's dense scoring pass on the union), then both pruned, and the federated uniform run beside them."""
    from kenprune.allocate import resolve_allocation
    from kenprune.allocate.model import layer_source, model_layers
    from kenprune.federated.rounds import score_rounds

    torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), os.getloadavg()
    loaded = load_model(args.model)
    dense = loaded.model
    clients = [ClientData(calibration_windows(loaded.tokenizer, f"{d}:calib", nsamples=args.samples,
                                              seqlen=args.seqlen, seed=args.seed), f"{d}:calib", args.seed, d)
               for d in DOMAINS]
    union = torch.cat([c.windows for c in clients])
    bos = resolve_bos(loaded, "auto")
    evals = {d: make_windows(tokenize_stream(loaded.tokenizer, join_text(load_documents(f"{d}:test"))),
                             args.eval_seqlen, bos, args.eval_windows) for d in DOMAINS}
    method, sparsity, spec = args.allocation.split("@")
    sparsity = float(sparsity)
    t = time.perf_counter()
    central = resolve_allocation(spec, layer_source(dense, union, method=method, progress=False), sparsity)
    seconds = {"centralized scoring + allocation": time.perf_counter() - t}
    t = time.perf_counter()
    scores, scoring = score_rounds(dense, clients, method=method, progress=False)
    federated = resolve_allocation(spec, model_layers(dense, scores), sparsity)
    del scores
    seconds["federated scoring round + allocation"] = time.perf_counter() - t
    diffs = [abs(federated.ratios[n] - r) for n, r in central.ratios.items()]
    ratios = {"max_abs_diff": max(diffs), "identical_layers": sum(d == 0 for d in diffs), "layers": len(diffs),
              "centralized_range": [min(central.ratios.values()), max(central.ratios.values())],
              "federated_range": [min(federated.ratios.values()), max(federated.ratios.values())]}
    models = {}
    for name, run in ((f"centralized {spec}", lambda m: prune_model(m, union, method=method, sparsity=central.ratios,
                                                                   progress=False)),
                      (f"federated {spec}", lambda m: prune_rounds(m, clients, method=method,
                                                                  sparsity=federated.ratios, agreement=False,
                                                                  progress=False)),
                      ("federated uniform", lambda m: prune_rounds(m, clients, method=method, sparsity=sparsity,
                                                                   agreement=False, progress=False))):
        t = time.perf_counter()
        models[name] = copy.deepcopy(dense)
        run(models[name])
        seconds[name] = time.perf_counter() - t
    vs = compare(models[f"centralized {spec}"], models[f"federated {spec}"])
    rows = [{"run": name, **{f"ppl {d}": f"{v['ppl']:.1f} [{v['lo']:.1f}, {v['hi']:.1f}]"
                             for d, v in domain_ppl(m, evals).items()}, "prune s": seconds[name]}
            for name, m in models.items()]
    print_table(rows, ["run", *[f"ppl {d}" for d in DOMAINS], "prune s"])
    print(f"allocation ratios federated vs centralized: {ratios}; masks: {vs}")
    save("federated_allocation", {"model": args.model, "method": method, "sparsity": sparsity, "allocation": spec,
                                  "clients": [c.identity() for c in clients], "threads": args.threads,
                                  "evaluation": {"splits": [f"{d}:test" for d in DOMAINS],
                                                 "windows": args.eval_windows, "seqlen": args.eval_seqlen,
                                                 "bos": bos, "interval": "95 % over windows, normal approx."}},
         rows, ratios=ratios, masks_federated_vs_centralized=vs, scoring=scoring, seconds=seconds,
         loadavg={"before": load_before, "after": os.getloadavg()}, wall_seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
