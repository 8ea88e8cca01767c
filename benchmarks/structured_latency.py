"""CPU latency of structurally pruned models vs dense, on an idle machine, per thread count.

Speed does not depend on weight values, so this uses a random-initialised model with the real
model's config (default: smollm2-135m's) and prunes it with L2 importance at each ratio; the
accuracy side lives in benchmarks/structured.py. Dense and pruned are timed alternately.
"""
from __future__ import annotations

import argparse
import json
import time

from _common import print_table, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None, help="a config.json (default: the registry smollm2-135m's)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="3 rounds, 16 decode tokens, threads 1 and 2")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.decode_tokens, args.threads = 3, 16, [1, 2]

    import copy
    from pathlib import Path

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kenprune.models.loading import LoadedModel
    from kenprune.evaluate.latency import compare_latency, latency_row
    from kenprune.structured.plan import PrunePlan
    from kenprune.structured.prune import prune_structured

    if args.config is None:
        from kenprune.models.loading import MODELS

        args.config = str(Path(MODELS.get("smollm2-135m").folder()) / "config.json")
    config_dict = json.loads(Path(args.config).read_text())
    config = AutoConfig.for_model(**config_dict)
    torch.manual_seed(0)
    dense = AutoModelForCausalLM.from_config(config).eval()
    start = time.perf_counter()
    rows = []
    for ratio in args.ratios:
        loaded = LoadedModel(copy.deepcopy(dense), None, "random-init", args.config, "causal-lm")
        result = prune_structured(loaded, PrunePlan(ratio), importance="l2", progress=False)
        for threads in args.threads:
            torch.set_num_threads(threads)
            d, p, s = compare_latency(dense, loaded.model, rounds=args.rounds, decode_tokens=args.decode_tokens)
            w = result.widths_after[0]
            rows.append({"ratio": ratio, "threads": threads, "widths": f"{w.heads}h/{w.intermediate}",
                         "block_removed": 1 - result.block_parameters_after / result.block_parameters_before,
                         **latency_row(d, p, s)})
            print(f"[{time.perf_counter() - start:6.1f} s] ratio {ratio} threads {threads} done", flush=True)
    print_table(rows, list(rows[0]))
    goal = all(r["decode_vs_ideal"] >= 0.8 for r in rows)
    print(f"\ngoal decode speed-up >= 0.8x ideal: {goal}")
    save("structured_latency", {"config": config_dict.get("_model_name_or_path", args.config), "ratios": args.ratios,
                                "threads": args.threads, "rounds": args.rounds, "prefill_tokens": 512,
                                "decode_tokens": args.decode_tokens, "quick": args.quick, "importance": "l2",
                                "weights": "random init (speed does not depend on values)"},
         rows, goal_decode_at_least_0_8_ideal=goal)


if __name__ == "__main__":
    main()
