"""Structured pruning of smollm2-135m (LLM-Pruner style): size, perplexity with and without LoRA, real speed.

For each ratio (fraction of heads / MLP channels removed in every block; 0.2 and 0.5 remove about
20 % and 50 % of block parameters on smollm2) and each importance (L2, Taylor, random): parameters,
file size, wiki:test perplexity before and after LoRA recovery. Per ratio, CPU latency of the pruned
model against the dense one measured alternately in this run (prefill of 512 tokens, batch-1 decode
tokens/s) next to the ideal ratio from multiply-accumulate counts.
Goals: decode speed-up >= 0.8x ideal; Taylor beats L2 and random; LoRA lowers perplexity.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import print_table, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--importances", nargs="+", default=["l2", "taylor", "random"])
    parser.add_argument("--calib", default="wiki:calib")
    parser.add_argument("--nsamples", type=int, default=10)
    parser.add_argument("--calib-seqlen", type=int, default=128)
    parser.add_argument("--eval", default="wiki:test")
    parser.add_argument("--eval-seqlen", type=int, default=512)
    parser.add_argument("--eval-windows", type=int, default=None, help="default: the whole split")
    parser.add_argument("--lora-data", default="wiki:calib")
    parser.add_argument("--lora-steps", type=int, default=200)
    parser.add_argument("--lora-seqlen", type=int, default=256)
    parser.add_argument("--lora-batch", type=int, default=4)
    parser.add_argument("--lora-lr", type=float, default=2e-4)
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="reduced run: 4 eval windows x 256, 8 calib windows x 64, 8 LoRA steps x 2 x 128, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.eval_windows, args.eval_seqlen = 4, 256
        args.nsamples, args.calib_seqlen = 8, 64
        args.lora_steps, args.lora_batch, args.lora_seqlen = 8, 2, 128
        args.latency_rounds, args.decode_tokens = 3, 16

    from kenprune.evaluate import evaluate
    from kenprune.evaluate.latency import compare_latency, latency_row
    from kenprune.jobs.recover import recover
    from kenprune.jobs.structured import structured_prune
    from kenprune.measure import path_bytes
    from kenprune.models.loading import load_model
    from kenprune.settings import Calibration, Evaluation, LoraSettings
    from kenprune.structured.removal import count_parameters

    start = time.perf_counter()
    dense = load_model(args.model)
    protocol = Evaluation(data=args.eval, seqlen=args.eval_seqlen, windows=args.eval_windows, before=False)
    calibration = Calibration(data=args.calib, samples=args.nsamples, seqlen=args.calib_seqlen, seed=args.seed)
    settings = LoraSettings(data=args.lora_data, steps=args.lora_steps, seqlen=args.lora_seqlen,
                            batch_size=args.lora_batch, lr=args.lora_lr, seed=args.seed)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", flush=True)

    dense_ppl = evaluate(dense, protocol, role="before", label="dense", progress=False).value
    rows = [{"ratio": 0.0, "importance": "dense", "params_M": count_parameters(dense.model) / 1e6,
             "block_removed": 0.0, "file_MiB": path_bytes(Path(dense.source) / "model.safetensors") / 2**20,
             "ppl": dense_ppl, "ppl_lora": None}]
    log(f"dense perplexity {dense_ppl:.3f}")
    latency = []
    with tempfile.TemporaryDirectory() as tmp:
        for ratio in args.ratios:
            for importance in args.importances:
                folder = Path(tmp) / f"{importance}-{ratio}"
                # the job's own latency has a fixed decode length: the benchmark times --decode-tokens below
                pruned = structured_prune(args.model, folder, calibration=calibration, evaluation=protocol,
                                          progress=False, importance=importance, ratio=ratio, latency=False)
                summary, width = pruned.details, pruned.details["widths_after"][0]
                row = {"ratio": ratio, "importance": importance, "params_M": summary["parameters_after"] / 1e6,
                       "block_removed": summary["block_parameters_removed"],
                       "file_MiB": path_bytes(folder / "model.safetensors") / 2**20,
                       "ppl": pruned.quality_of("after").value,
                       "widths": f"{width['heads']}h/{width['intermediate']}"}
                log(f"ratio {ratio} {importance}: ppl {row['ppl']:.3f}")
                if importance == args.importances[0]:  # widths are the same for every importance
                    d, p, s = compare_latency(dense.model, load_model(str(folder)).model, rounds=args.latency_rounds,
                                              decode_tokens=args.decode_tokens)
                    latency.append({"ratio": ratio, "widths": row["widths"], **latency_row(d, p, s)})
                    log(f"ratio {ratio} latency: decode {s['decode_measured']:.2f}x (ideal {s['decode_ideal']:.2f}x)")
                recovered = recover(str(folder), Path(tmp) / f"{folder.name}-lora", evaluation=protocol,
                                    progress=False, **settings.to_dict())
                training = recovered.details["training"]
                row.update(ppl_lora=recovered.quality_of("after").value, lora_loss_first=training["loss_first_tenth"],
                           lora_loss_last=training["loss_last_tenth"])
                log(f"ratio {ratio} {importance}: ppl after LoRA {row['ppl_lora']:.3f}")
                rows.append(row)

    print_table(rows, ["ratio", "importance", "widths", "params_M", "block_removed", "file_MiB", "ppl", "ppl_lora"])
    print()
    print_table(latency, ["ratio", "widths", "dense_prefill_s", "pruned_prefill_s", "prefill_speedup", "prefill_ideal",
                          "dense_decode_tok_s", "pruned_decode_tok_s", "decode_speedup", "decode_ideal",
                          "decode_vs_ideal"])
    by = {(r["ratio"], r["importance"]): r for r in rows}
    goals = {
        "decode_speedup_at_least_0.8_ideal": all(r["decode_vs_ideal"] >= 0.8 for r in latency),
        "taylor_beats_l2_and_random": all(
            by[(ratio, "taylor")]["ppl"] < min(by[(ratio, o)]["ppl"] for o in ("l2", "random") if (ratio, o) in by)
            for ratio in args.ratios if (ratio, "taylor") in by),
        "lora_lowers_perplexity": all(r["ppl_lora"] < r["ppl"] for r in rows[1:]),
    }
    print(f"\ngoals: {goals}")
    config = {"model": args.model, "eval": args.eval, "eval_seqlen": args.eval_seqlen,
              "eval_windows": args.eval_windows, "calib": args.calib, "nsamples": args.nsamples,
              "calib_seqlen": args.calib_seqlen, "lora": settings.to_dict(),
              "latency_rounds": args.latency_rounds, "prefill_tokens": 512, "decode_tokens": args.decode_tokens,
              "seed": args.seed, "quick": args.quick, "keep_first": 0, "keep_last": 0, "round_to": 8}
    save("structured", config, rows, latency=latency, goals=goals, seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
