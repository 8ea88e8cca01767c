"""The seed list's structured systems on smollm2-135m at 20 %: Beta-Rank vs Taylor / L1 / random (with selection
stability), polarization-gated pruning, and the scratch control, all in one run against the dense model.

Arms (every block, the same ratio, so every arm ends with the same widths): importance -> prune -> (LoRA recovery
of N steps), for taylor and beta-rank; l1 and random without recovery; polarization = gates + LoRA trained N steps
from the dense model, then removal; scratch = taylor's pruned architecture re-initialized and trained (all
weights) for the same N steps on the same windows. Perplexity on wiki:test from per-window mean NLL (windows of
--eval-seqlen tokens, no BOS), with a bootstrap 95 % interval over windows and, against taylor + LoRA, the paired
per-window NLL difference with its interval. Selection stability: Jaccard overlap of the removed units across
--stability calibration subsets (seeds). Decode speed of the pruned width against dense, measured alternately.

Paper claims checked (as far as this budget allows):
- Beta-Rank (arXiv 2304.07461): ranking by weights x how the unit changes the data beats L1 and is more stable.
- Polarization one-pass (arXiv 2302.10798): gates trained once with the network reach a target sparsity with
  little loss (50 % of connections, < 1 % accuracy on CIFAR).
- Rethinking (Liu et al. ICLR 2019): the pruned architecture trained from scratch matches pruned + fine-tuned
  (with a full training budget; here N steps only).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch

from kenprune.evaluate.intervals import wilson  # noqa: E402
from _common import print_table, save

SCRATCH = "scratch (taylor's architecture)"


def window_nll(model, windows: torch.Tensor) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for w in windows:
            out.append(model(input_ids=w.unsqueeze(0), labels=w.unsqueeze(0), use_cache=False).loss.item())
    return torch.tensor(out, dtype=torch.float64)


def bootstrap(values: torch.Tensor, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, values.numel(), (n, values.numel()), generator=gen)
    means = values[idx].mean(1)
    return means.quantile(0.025).item(), means.quantile(0.975).item()


def classify_part(args) -> None:
    """minilm-l6 fine-tuned on a 9:1 imbalanced split of a labelled corpus, pruned by each importance at each
    ratio (no recovery): per-class accuracy on the balanced test split with Wilson intervals, and the selection
    stability over calibration subsets drawn from the imbalanced training data."""
    from kenprune.data.corpora import load_documents
    from kenprune.models.loading import SEQUENCE_CLASSIFICATION, load_model
    from kenprune.structured.groups import block_groups
    from kenprune.structured.plan import PrunePlan, plan_keep
    from kenprune.structured.prune import score_units
    from kenprune.structured.removal import apply_widths, block_widths, count_parameters, remove_units
    from kenprune.structured.stability import selection_stability

    start = time.perf_counter()
    loads = [os.getloadavg()[0]]
    results = []
    for task in args.tasks:
        docs = load_documents(f"{task}:calib") + load_documents(f"{task}:valid")
        labels = sorted({d.label for d in docs})
        major, minor = labels[0], labels[1]
        gen = torch.Generator().manual_seed(args.seed)
        majors = [d for d in docs if d.label == major]
        minors = [d for d in docs if d.label == minor]
        minors = [minors[i] for i in torch.randperm(len(minors), generator=gen)[: max(1, len(majors) // 9)].tolist()]
        train = majors + minors
        test = load_documents(f"{task}:test")
        loaded = load_model("minilm-l6", task=SEQUENCE_CLASSIFICATION, labels=labels)
        tok, label2id = loaded.tokenizer, {lab: i for i, lab in enumerate(labels)}

        def batch(items, padded=False):
            enc = tok([d.text for d in items], truncation=True, max_length=args.cls_seqlen, return_tensors="pt",
                      padding="max_length" if padded else True)
            return {**enc, "labels": torch.tensor([label2id[d.label] for d in items])}

        torch.manual_seed(args.seed)
        model = loaded.model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=args.cls_lr)
        counts = torch.tensor([sum(d.label == lab for d in train) for lab in labels], dtype=torch.float32)
        weight = (counts.sum() / (len(labels) * counts)) if args.cls_weighted else None  # inverse frequency
        for step in range(args.cls_steps):
            order = torch.randperm(len(train), generator=gen)[: args.cls_batch].tolist()
            b = batch([train[i] for i in order])
            logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits
            loss = torch.nn.functional.cross_entropy(logits, b["labels"], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()

        def per_class(m) -> dict:
            correct = {lab: 0 for lab in labels}
            with torch.no_grad():
                for i in range(0, len(test), 16):
                    b = batch(test[i:i + 16])
                    pred = m(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1)
                    for y, p_ in zip(b["labels"].tolist(), pred.tolist()):
                        correct[labels[y]] += int(y == p_)
            counts = {lab: sum(d.label == lab for d in test) for lab in labels}
            row = {"accuracy": sum(correct.values()) / len(test)}
            for lab, role in ((major, "major"), (minor, "minor")):
                lo, hi = wilson(correct[lab], counts[lab])
                row.update({f"acc_{role}": correct[lab] / counts[lab], f"{role}_lo": lo, f"{role}_hi": hi})
            row["balanced"] = (row["acc_major"] + row["acc_minor"]) / 2
            return row

        dense = per_class(model)
        results.append({"task": task, "ratio": 0.0, "importance": "dense", "train": f"{len(majors)}:{len(minors)}",
                        "params_M": count_parameters(model) / 1e6, **dense})
        print(f"[{time.perf_counter() - start:7.1f} s] {task} dense {dense}", flush=True)

        def calibration(run: int) -> list[dict]:
            g = torch.Generator().manual_seed(args.seed + run)
            chosen = [train[i] for i in torch.randperm(len(train), generator=g)[: args.cls_calib].tolist()]
            return [batch(chosen[i:i + 8], padded=True) for i in range(0, len(chosen), 8)]

        for ratio in args.cls_ratios:
            for importance in ("l1", "l2", "taylor", "beta-rank", "random"):
                m = copy.deepcopy(model)
                groups = block_groups(m)
                plan, n_blocks = PrunePlan(ratio), len(block_widths(m))
                pruned = set(plan.pruned_blocks(n_blocks))
                selections = []
                for run in range(args.stability):
                    scores = score_units(m, groups, pruned, importance, calibration(run), seed=args.seed + run,
                                         beta=args.beta, progress=False)
                    selections.append(plan_keep(groups, scores, plan, n_blocks))
                blocks_before = count_parameters(m, blocks_only=True)
                with torch.no_grad():
                    remove_units(groups, selections[0])
                apply_widths(m, block_widths(m))
                st = selection_stability(selections, [g.units for g in groups])
                row = {"task": task, "ratio": ratio, "importance": importance, "train": f"{len(majors)}:{len(minors)}",
                       "params_M": count_parameters(m) / 1e6,
                       "block_removed": 1 - count_parameters(m, blocks_only=True) / blocks_before,
                       **per_class(m), "removed_overlap": st["removed_overlap"], "kept_overlap": st["kept_overlap"]}
                results.append(row)
                loads.append(os.getloadavg()[0])
                print(f"[{time.perf_counter() - start:7.1f} s, load {loads[-1]:.1f}] {task} {ratio} {importance}: "
                      f"acc {row['accuracy']:.3f} major {row['acc_major']:.3f} minor {row['acc_minor']:.3f} "
                      f"removed overlap {st['removed_overlap']:.3f}", flush=True)
    print_table(results, ["task", "ratio", "importance", "block_removed", "accuracy", "acc_major", "major_lo",
                          "major_hi", "acc_minor", "minor_lo", "minor_hi", "balanced", "removed_overlap"])
    config = {"model": "minilm-l6", "tasks": args.tasks, "train": "calib+valid splits, minority class cut to 1/9",
              "test": "test split (balanced)", "finetune_steps": args.cls_steps, "finetune_batch": args.cls_batch,
              "finetune_lr": args.cls_lr, "class_weighted_loss": args.cls_weighted, "seqlen": args.cls_seqlen, "calibration_docs": args.cls_calib,
              "calibration": "drawn from the imbalanced training set, padded to seqlen", "ratios": args.cls_ratios,
              "stability_runs": args.stability, "beta": args.beta, "recovery": "none", "seed": args.seed,
              "interval": "Wilson 95 %"}
    save("structured_seeds_minilm", config, results, loadavg=loads, seconds=time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("lm", "classify", "beta", "all"), default="all",
                        help="lm: smollm2 (results/structured_seeds.json); classify: minilm "
                             "(results/structured_seeds_minilm.json); beta: smollm2 beta-rank at each --beta-sweep "
                             "value against taylor and l1, no recovery (results/structured_seeds_beta.json)")
    parser.add_argument("--beta-sweep", type=float, nargs="+", default=[1.0, 0.9, 0.5])
    parser.add_argument("--tasks", nargs="+", default=["pang-lee", "newsgroups-mini"])
    parser.add_argument("--cls-ratios", type=float, nargs="+", default=[0.2, 0.4])
    parser.add_argument("--cls-steps", type=int, default=60)
    parser.add_argument("--cls-batch", type=int, default=16)
    parser.add_argument("--cls-lr", type=float, default=1e-4)
    parser.add_argument("--cls-seqlen", type=int, default=128)
    parser.add_argument("--cls-calib", type=int, default=32, help="calibration documents per subset")
    parser.add_argument("--cls-weighted", action=argparse.BooleanOptionalAction, default=True,
                        help="fine-tune with inverse-frequency class weights (else the dense model may ignore the "
                             "minority class)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--calib", default="wiki:calib")
    parser.add_argument("--nsamples", type=int, default=8)
    parser.add_argument("--calib-seqlen", type=int, default=128)
    parser.add_argument("--stability", type=int, default=3)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--eval", default="wiki:test")
    parser.add_argument("--eval-seqlen", type=int, default=512)
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--train-data", default="wiki:calib")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--train-seqlen", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--lora-lr", type=float, default=5e-4)
    parser.add_argument("--gate-lr", type=float, default=0.2)
    parser.add_argument("--polarization", type=float, default=1.0)
    parser.add_argument("--scratch-lr", type=float, default=1e-3)
    parser.add_argument("--latency-rounds", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("classify", "all"):
        classify_part(args)
    if args.part in ("lm", "all"):
        lm_part(args)
    if args.part in ("beta", "all"):
        beta_part(args)


def beta_part(args) -> None:
    """Is it the L1 half of the mix? smollm2 pruned by beta-rank at several beta (1 = the data-aware rank alone),
    by taylor and by l1, no recovery: perplexity with intervals, paired against taylor, and stability."""
    from kenprune.data.corpora import join_text, load_documents, tokenize_stream
    from kenprune.models.loading import LoadedModel, load_model
    from kenprune.structured.plan import PrunePlan
    from kenprune.structured.prune import prune_structured

    start = time.perf_counter()
    loads = [os.getloadavg()[0]]
    dense = load_model(args.model)
    tokens = tokenize_stream(dense.tokenizer, join_text(load_documents(args.eval)))
    n = min(args.eval_windows, tokens.numel() // args.eval_seqlen)
    windows = tokens[: n * args.eval_seqlen].view(n, args.eval_seqlen)
    arms = [("taylor", 0.5), ("l1", 0.5)] + [("beta-rank", b) for b in args.beta_sweep]
    nll, meta = {}, {}
    for importance, beta in arms:
        loaded = LoadedModel(copy.deepcopy(dense.model), dense.tokenizer, dense.name, dense.source, dense.task,
                             dense.bos)
        d = prune_structured(loaded, PrunePlan(args.ratio), importance=importance, calib=args.calib,
                             nsamples=args.nsamples, seqlen=args.calib_seqlen, seed=args.seed, beta=beta,
                             stability=args.stability, progress=False).to_dict()
        name = importance if importance != "beta-rank" else f"beta-rank b={beta}"
        nll[name], meta[name] = window_nll(loaded.model, windows), d["stability"]
        loads.append(os.getloadavg()[0])
        print(f"[{time.perf_counter() - start:7.1f} s, load {loads[-1]:.1f}] {name}: ppl "
              f"{nll[name].mean().exp():.2f}, removed overlap {d['stability']['removed_overlap']:.3f}", flush=True)
    rows = []
    for name, values in nll.items():
        lo, hi = bootstrap(values, seed=args.seed)
        dlo, dhi = bootstrap(values - nll["taylor"], seed=args.seed)
        rows.append({"arm": name, "ppl": values.mean().exp().item(), "ppl_lo": math.exp(lo), "ppl_hi": math.exp(hi),
                     "nll_vs_taylor": (values - nll["taylor"]).mean().item(), "diff_lo": dlo, "diff_hi": dhi,
                     "removed_overlap": meta[name]["removed_overlap"], "kept_overlap": meta[name]["kept_overlap"],
                     "per_window_nll": values.tolist()})
    print_table(rows, ["arm", "ppl", "ppl_lo", "ppl_hi", "nll_vs_taylor", "diff_lo", "diff_hi", "removed_overlap"])
    config = {"model": args.model, "ratio": args.ratio, "calib": args.calib, "nsamples": args.nsamples,
              "calib_seqlen": args.calib_seqlen, "stability_runs": args.stability, "eval": args.eval,
              "eval_seqlen": args.eval_seqlen, "eval_windows": n, "eval_bos": "none", "recovery": "none",
              "threads": args.threads, "seed": args.seed, "bootstrap": 2000}
    save("structured_seeds_beta", config, rows, loadavg=loads, seconds=time.perf_counter() - start)


def lm_part(args) -> None:

    from kenprune.data.corpora import join_text, load_documents, tokenize_stream
    from kenprune.evaluate.latency import compare_latency, latency_row
    from kenprune.models.loading import LoadedModel, load_model
    from kenprune.settings import LoraSettings
    from kenprune.structured.plan import PrunePlan
    from kenprune.structured.prune import prune_structured
    from kenprune.structured.recover import lora_recover
    from kenprune.structured.removal import count_parameters
    from kenprune.structured.scratch import train_from_scratch

    start = time.perf_counter()
    loads = [os.getloadavg()[0]]

    def log(msg: str) -> None:
        loads.append(os.getloadavg()[0])
        print(f"[{time.perf_counter() - start:7.1f} s, load {loads[-1]:.1f}] {msg}", flush=True)

    dense = load_model(args.model)
    tokens = tokenize_stream(dense.tokenizer, join_text(load_documents(args.eval)))
    n = min(args.eval_windows, tokens.numel() // args.eval_seqlen)
    eval_windows = tokens[: n * args.eval_seqlen].view(n, args.eval_seqlen)
    train = LoraSettings(data=args.train_data, steps=args.steps, seqlen=args.train_seqlen,
                         batch_size=args.train_batch, lr=args.lora_lr, seed=args.seed)
    plan = PrunePlan(args.ratio)
    nll: dict[str, torch.Tensor] = {"dense": window_nll(dense.model, eval_windows)}
    rows_meta: dict[str, dict] = {"dense": {"params_M": count_parameters(dense.model) / 1e6, "steps": 0}}
    log(f"dense ppl {nll['dense'].mean().exp():.3f}")

    def fresh() -> LoadedModel:
        return LoadedModel(copy.deepcopy(dense.model), dense.tokenizer, dense.name, dense.source, dense.task, dense.bos)

    stability: dict[str, dict] = {}
    pruned_arch = None
    for importance in ("taylor", "beta-rank", "l1", "random"):
        loaded = fresh()
        t0 = time.perf_counter()
        result = prune_structured(loaded, plan, importance=importance, calib=args.calib, nsamples=args.nsamples,
                                  seqlen=args.calib_seqlen, seed=args.seed, beta=args.beta,
                                  stability=args.stability, progress=False)
        d = result.to_dict()
        stability[importance] = d.get("stability")
        name = importance if importance != "beta-rank" else f"beta-rank b={args.beta}"
        nll[name] = window_nll(loaded.model, eval_windows)
        rows_meta[name] = {"params_M": d["parameters_after"] / 1e6, "block_removed": d["block_parameters_removed"],
                           "steps": 0, "removed_overlap": d["stability"]["removed_overlap"],
                           "kept_overlap": d["stability"]["kept_overlap"], "select_s": time.perf_counter() - t0}
        log(f"{name}: ppl {nll[name].mean().exp():.3f}, removed overlap {d['stability']['removed_overlap']:.3f}")
        if importance == "taylor":
            pruned_arch = copy.deepcopy(loaded.model)
        if importance in ("taylor", "beta-rank"):
            report = lora_recover(loaded, args.train_data, train, progress=False)
            nll[f"{name} + LoRA"] = window_nll(loaded.model, eval_windows)
            rows_meta[f"{name} + LoRA"] = {**rows_meta[name], "steps": args.steps,
                                           "train_loss_last": report["loss_last_tenth"]}
            log(f"{name} + LoRA: ppl {nll[f'{name} + LoRA'].mean().exp():.3f}")
        del loaded

    loaded = fresh()
    result = prune_structured(loaded, plan, importance="polarization", train=train, polarization=args.polarization,
                              gate_lr=args.gate_lr, progress=False)
    d = result.to_dict()
    nll["polarization gates + LoRA"] = window_nll(loaded.model, eval_windows)
    rows_meta["polarization gates + LoRA"] = {"params_M": d["parameters_after"] / 1e6,
                                              "block_removed": d["block_parameters_removed"], "steps": args.steps,
                                              "train_loss_last": d["training"]["loss_last_tenth"], **d["gates"]}
    log(f"polarization: ppl {nll['polarization gates + LoRA'].mean().exp():.3f}, gates {d['gates']}")
    gates = d["gates"]
    del loaded

    scratch = LoadedModel(pruned_arch, dense.tokenizer, dense.name, dense.source, dense.task, dense.bos)
    report = train_from_scratch(scratch, args.train_data, train, args.scratch_lr, progress=False)
    nll[SCRATCH] = window_nll(scratch.model, eval_windows)
    rows_meta[SCRATCH] = {"params_M": count_parameters(scratch.model) / 1e6,
                                                    "steps": args.steps, "train_loss_last": report["loss_last_tenth"]}
    log(f"scratch: ppl {nll[SCRATCH].mean().exp():.3f}")

    dl, pl, speed = compare_latency(dense.model, scratch.model, rounds=args.latency_rounds,
                                    decode_tokens=args.decode_tokens)
    latency = latency_row(dl, pl, speed)
    log(f"decode {speed['decode_measured']:.2f}x (ideal {speed['decode_ideal']:.2f}x)")

    reference = nll["taylor + LoRA"]
    rows = []
    for name, values in nll.items():
        lo, hi = bootstrap(values, seed=args.seed)
        diff = values - reference
        dlo, dhi = bootstrap(diff, seed=args.seed)
        rows.append({"arm": name, **{k: rows_meta[name].get(k) for k in ("params_M", "steps")},
                     "ppl": values.mean().exp().item(), "ppl_lo": math.exp(lo),
                     "ppl_hi": math.exp(hi), "nll_vs_taylor_lora": diff.mean().item(),
                     "diff_lo": dlo, "diff_hi": dhi, "removed_overlap": rows_meta[name].get("removed_overlap"),
                     "kept_overlap": rows_meta[name].get("kept_overlap"), "per_window_nll": values.tolist(),
                     **{k: v for k, v in rows_meta[name].items() if k not in ("params_M", "steps")}})
    print_table(rows, ["arm", "params_M", "steps", "ppl", "ppl_lo", "ppl_hi", "nll_vs_taylor_lora", "diff_lo",
                       "diff_hi", "removed_overlap"])
    print()
    print_table([latency], list(latency))
    by = {r["arm"]: r for r in rows}
    beta = f"beta-rank b={args.beta}"
    findings = {
        "beta_rank_beats_l1_before_recovery": by[beta]["ppl"] < by["l1"]["ppl"],
        "beta_rank_beats_taylor_before_recovery": by[beta]["ppl"] < by["taylor"]["ppl"],
        "beta_rank_vs_taylor_after_lora_nll_diff_ci": [by[f"{beta} + LoRA"]["diff_lo"], by[f"{beta} + LoRA"]["diff_hi"]],
        "beta_rank_more_stable_than_taylor": (stability["beta-rank"]["removed_overlap"]
                                              > stability["taylor"]["removed_overlap"]),
        "polarization_vs_taylor_lora_nll_diff_ci": [by["polarization gates + LoRA"]["diff_lo"],
                                                    by["polarization gates + LoRA"]["diff_hi"]],
        "polarization_gates_binary_fraction": gates["gates_binary_fraction"],
        "scratch_matches_pruned_lora": by[SCRATCH]["diff_lo"] <= 0,
    }
    print(f"\nfindings: {findings}")
    config = {"model": args.model, "ratio": args.ratio, "calib": args.calib, "nsamples": args.nsamples,
              "calib_seqlen": args.calib_seqlen, "stability_runs": args.stability, "beta": args.beta,
              "eval": args.eval, "eval_seqlen": args.eval_seqlen, "eval_windows": n, "eval_bos": "none",
              "train": train.to_dict(), "gate_lr": args.gate_lr, "polarization": args.polarization,
              "scratch_lr": args.scratch_lr, "latency_rounds": args.latency_rounds,
              "decode_tokens": args.decode_tokens, "threads": args.threads, "seed": args.seed,
              "keep_first": 0, "keep_last": 0, "round_to": 8, "bootstrap": 2000}
    save("structured_seeds", config, rows, stability=stability, latency=latency, findings=findings,
         loadavg=loads, seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
