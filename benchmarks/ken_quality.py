"""KEN quality: does KEN match the fine-tuned model with >= 25% fewer stored parameters, and how does it
compare with the delta-compression baselines at the same kept count per row and with LoRA at equal bytes?

Testbeds (the fine-tuned model is cached under $KENPRUNE_CACHE/ken-bench, keyed by setup, steps, seed):
- minilm-l6/austen-novels: which of Austen's six novels a 48-word passage comes from (kenprune corpus
  `austen-novels`, ~12k training passages); held-out accuracy on the first --examples passages of the
  test split, per passage, so every figure has a Wilson interval and every difference a paired
  bootstrap interval. "pre-trained + head" is the frozen pre-trained encoder with a logistic-regression
  head trained on --probe-examples training passages (what fine-tuning must beat).
- smollm2-135m/austen: domain adaptation on Austen's novels (`austen`), held-out perplexity on
  --windows windows of the Austen test split and --wiki-windows of wiki:test (what the fine-tune
  forgot), per window: bootstrap intervals over windows, paired.
- minilm-l6/pang-lee, minilm-l6/newsgroups-mini: the small checks (40 test examples each).

Selections (kenprune.ken.selections, all at the same kept count per row): KEN (the paper), KEN fitted
on the deltas, random, largest |delta|, DARE (random k, deltas rescaled by n/k), largest |fine-tuned|;
"X, k by global": selection X with the same total kept count but per-tensor k from the global allocator
over |delta| (`kenprune ken --allocation global`: more k where the fine-tuning changed more);
plus LoRA with its adapter file sized to KEN's subnetwork file at the same k (same data, steps, batch).
Rows run in --order (priority) and the JSON is rewritten after every row, so a run stopped early keeps
what it measured.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kenprune.evaluate.intervals import wilson  # noqa: E402
from _common import RESULTS  # noqa: E402

from kenprune import provenance  # noqa: E402
from kenprune.fileio import write_json  # noqa: E402
from kenprune.ken.selections import ROW_SELECTIONS  # noqa: E402

BOOT = 2000


@dataclass(frozen=True)
class Testbed:
    model: str
    data: str
    finetune: dict
    heldout: str
    lower_better: bool
    extra_eval: str | None = None  # a second held-out set (perplexity: what the fine-tune forgot)
    lora_targets: tuple[str, ...] = ()
    ft_eval: dict = field(default_factory=dict)


TESTBEDS = {
    "minilm-l6/austen-novels": Testbed("minilm-l6", "austen-novels", dict(steps=200, batch_size=16, seqlen=80, lr=2e-4),
                                       "austen-novels:test", False, lora_targets=("query", "key", "value", "dense")),
    "smollm2-135m/austen": Testbed("smollm2-135m", "austen", dict(steps=24, batch_size=2, seqlen=256, lr=2e-4),
                                   "austen:test", True, extra_eval="wiki:test",
                                   lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"), ft_eval=dict(seqlen=256, windows=4)),
    "minilm-l6/pang-lee": Testbed("minilm-l6", "pang-lee", dict(steps=40, batch_size=16, seqlen=64, lr=1e-4),
                                  "pang-lee:test", False),
    "minilm-l6/newsgroups-mini": Testbed("minilm-l6", "newsgroups-mini",
                                         dict(steps=30, batch_size=8, seqlen=128, lr=1e-4),
                                         "newsgroups-mini:test", False),
}
SELECTIONS = {e.value.title(): e.name for e in ROW_SELECTIONS.entries()}  # label -> registry name


def finetuned_folder(name: str, seed: int) -> Path:
    from kenprune.jobs.finetune import finetune
    from kenprune.settings import FINETUNE_EVALUATION

    bed = TESTBEDS[name]
    folder = provenance.cache_root() / "ken-bench" / f"{name.replace('/', '-')}-s{bed.finetune['steps']}-seed{seed}"
    if not (folder / "kenprune.json").exists():
        print(f"fine-tuning {name} ({bed.finetune}) -> {folder}", flush=True)
        finetune(bed.model, bed.data, out=folder, seed=seed, progress=False,
                 evaluation=FINETUNE_EVALUATION.replace(**bed.ft_eval), **bed.finetune)
    return folder


# ---- per-example quality ---------------------------------------------------------------------------------

class Scorer:
    """Per-example scores of a model on a testbed's held-out data: correctness per passage (accuracy) or
    summed NLL and token count per window (perplexity), on fixed examples shared by every variant."""

    def __init__(self, ft, bed: Testbed, examples: int, windows: int, wiki_windows: int, seqlen: int):
        from kenprune.data.corpora import join_text, load_documents, tokenize_stream
        from kenprune.evaluate import make_windows, resolve_bos

        self.ft, self.bed = ft, bed
        if bed.lower_better:
            bos = resolve_bos(ft, "auto")
            self.sets = {}
            for ref, n in ((bed.heldout, windows), (bed.extra_eval, wiki_windows)):
                if ref and n:
                    tokens = tokenize_stream(ft.tokenizer, join_text(load_documents(ref)))
                    self.sets[ref] = make_windows(tokens, seqlen, bos, n)
            self.protocol = {ref: {"windows": int(w.shape[0]), "seqlen": seqlen, "tokens_predicted":
                                   int(w.shape[0] * (seqlen - 1))} for ref, w in self.sets.items()}
        else:
            docs = load_documents(bed.heldout)[:examples]
            label2id = {str(k): int(v) for k, v in ft.model.config.label2id.items()}
            self.docs, self.labels = docs, torch.tensor([label2id[d.label] for d in docs])
            self.protocol = {bed.heldout: {"examples": len(docs), "max_length": 128,
                                           "labels": sorted(label2id, key=label2id.get)}}

    @torch.inference_mode()
    def __call__(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from kenprune.evaluate import window_nll

        model.eval()
        if self.bed.lower_better:
            return {ref: torch.cat([window_nll(model, w[i:i + 4]) for i in range(0, w.shape[0], 4)])
                    for ref, w in self.sets.items()}
        return {self.bed.heldout: self.predict(lambda enc: model(**enc).logits.argmax(-1)) == self.labels}

    def predict(self, fn) -> torch.Tensor:
        out = []
        for i in range(0, len(self.docs), 32):
            enc = self.ft.tokenizer([d.text for d in self.docs[i:i + 32]], padding=True, truncation=True,
                                    max_length=128, return_tensors="pt")
            out.append(fn(dict(enc)))
        return torch.cat(out)

    def features(self, model: torch.nn.Module, docs) -> torch.Tensor:
        """The frozen encoder's pooled features (what a BERT classifier's head sees)."""
        saved = self.docs
        self.docs = docs
        try:
            with torch.inference_mode():
                return self.predict(lambda enc: model.bert(**enc).pooler_output)
        finally:
            self.docs = saved

    def summary(self, scores: dict[str, torch.Tensor], reference: dict[str, torch.Tensor] | None,
                seed: int) -> dict[str, dict]:
        """Per held-out set: the figure, its 95% interval, and the paired 95% interval of the difference
        to `reference` (the fine-tuned model) over the same examples."""
        out = {}
        gen = torch.Generator().manual_seed(seed)
        for ref, s in scores.items():
            n = s.shape[0]
            idx = torch.randint(0, n, (BOOT, n), generator=gen)
            if self.bed.lower_better:
                tokens = self.protocol[ref]["tokens_predicted"] / n
                value = math.exp(float(s.sum()) / (n * tokens))
                boot = torch.exp(s[idx].sum(1) / (n * tokens))
                lo, hi = (float(x) for x in torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype)))
                entry = {"metric": "perplexity", "value": value, "ci95": [lo, hi], "n": n}
                if reference is not None:
                    diff = boot - torch.exp(reference[ref][idx].sum(1) / (n * tokens))
                    entry["diff_vs_finetuned"] = value - math.exp(float(reference[ref].sum()) / (n * tokens))
            else:
                s = s.double()
                value = float(s.mean())
                entry = {"metric": "accuracy", "value": value, "ci95": list(wilson(int(s.sum()), n)), "n": n}
                if reference is not None:
                    r = reference[ref].double()
                    diff = s[idx].mean(1) - r[idx].mean(1)
                    entry["diff_vs_finetuned"] = value - float(r.mean())
            if reference is not None:
                q = torch.quantile(diff, torch.tensor([0.025, 0.975], dtype=diff.dtype))
                entry["diff_ci95"] = [float(q[0]), float(q[1])]
            out[ref] = entry
        return out


# ---- the matrix ------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args, self.rows, self.state = args, [], {}
        self.out = Path(args.out)

    def save(self) -> None:
        write_json(self.out, {"benchmark": "ken_quality", "seed": self.args.seed, "rows": self.rows,
                              "config": {k: v for k, v in vars(self.args).items() if k != "out"},
                              "testbeds": {n: {"model": b.model, "data": b.data, "finetune": b.finetune,
                                               "heldout": b.heldout, "extra_eval": b.extra_eval}
                                           for n, b in TESTBEDS.items()},
                              "protocols": {n: s["scorer"].protocol for n, s in self.state.items()},
                              "verdict": verdict(self.rows), **provenance.record()})

    def setup(self, name: str) -> dict:
        if name not in self.state:
            from kenprune.ken.apply import unique_parameters
            from kenprune.ken.pair import finetuned_bytes, load_pair

            bed = TESTBEDS[name]
            pre, ft = load_pair(None, str(finetuned_folder(name, self.args.seed)))
            scorer = Scorer(ft, bed, self.args.examples, self.args.windows, self.args.wiki_windows, self.args.seqlen)
            total = sum(p.numel() for p in unique_parameters(ft.model)[0].values())
            self.state[name] = {"pre": pre, "ft": ft, "scorer": scorer, "total": total, "sub_bytes": {}}
            ref = scorer(ft.model)
            self.state[name]["ref"] = ref
            self.add(name, "fine-tuned", None, ref, total, finetuned_bytes(ft), 0.0)
            if bed.lower_better:
                self.add(name, "pre-trained", None, scorer(pre.model), 0, 0, 0.0)
        return self.state[name]

    def add(self, name, method, k, scores, stored, nbytes, seconds, **extra) -> None:
        st = self.state[name]
        row = {"setup": name, "method": method, "k": k, "stored": stored, "stored_fraction": stored / st["total"],
               "bytes": nbytes, "seconds": seconds,
               "quality": st["scorer"].summary(scores, None if method == "fine-tuned" else st["ref"], self.args.seed),
               "loadavg": list(__import__("os").getloadavg()), **extra}
        self.rows.append(row)
        print_row(row, flush=True)
        self.save()

    def selection(self, name: str, label: str, k: float) -> None:
        from kenprune.ken.pair import ken_models
        from kenprune.ken.subnetwork import write_subnetwork

        st = self.setup(name)
        base, _, allocation = label.partition(ALLOCATED)
        start = time.perf_counter()
        run = ken_models(st["pre"], st["ft"], k, selection=SELECTIONS[base], seed=self.args.seed,
                         allocation=allocation or None, progress=False)
        seconds = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sub.safetensors"
            write_subnetwork(path, run.subnetwork)
            nbytes = path.stat().st_size
        if not allocation:
            st["sub_bytes"][k] = nbytes
        stored = run.selection.kept() + sum(t.numel() for t in run.subnetwork.full.values())
        self.add(name, label, k, st["scorer"](run.optimized), stored, nbytes, seconds)

    def probe(self, name: str) -> None:
        """The frozen pre-trained encoder with a trained head (logistic regression on pooled features)."""
        from sklearn.linear_model import LogisticRegression

        from kenprune.data.corpora import load_documents

        st = self.setup(name)
        bed, scorer = TESTBEDS[name], st["scorer"]
        start = time.perf_counter()
        train = load_documents(f"{bed.data}:calib")[:self.args.probe_examples]
        label2id = {str(k): int(v) for k, v in st["ft"].model.config.label2id.items()}
        clf = LogisticRegression(max_iter=2000, C=1.0)
        clf.fit(scorer.features(st["pre"].model, train).numpy(), [label2id[d.label] for d in train])
        predicted = torch.from_numpy(clf.predict(scorer.features(st["pre"].model, scorer.docs).numpy()))
        self.add(name, "pre-trained + head", None, {bed.heldout: predicted == scorer.labels}, 0, 0,
                 time.perf_counter() - start, probe_examples=len(train))

    def lora(self, name: str, k: float) -> None:
        """LoRA whose adapter file holds as many bytes as KEN's subnetwork at k; same data, steps and batch."""
        from kenprune.jobs.ken_lora import copy_loaded, recipe_batches
        from kenprune.ken.lora import head_bytes, lora_shapes, rank_for_bytes, train_lora

        st = self.setup(name)
        bed = TESTBEDS[name]
        if k not in st["sub_bytes"]:
            self.selection(name, "KEN", k)
        budget = st["sub_bytes"][k]
        loaded = copy_loaded(st["pre"])
        classifier = not bed.lower_better
        shapes = lora_shapes(loaded.model, bed.lora_targets)
        extra = head_bytes(loaded.model) if classifier else 0
        rank = min(rank_for_bytes(shapes, budget, extra_bytes=extra), min(min(s) for s in shapes))
        f = bed.finetune
        batches = recipe_batches(loaded, {"data": f"{bed.data}:calib", "seed": self.args.seed, **f}, classifier)
        start = time.perf_counter()
        info = train_lora(loaded, batches, rank=rank, targets=bed.lora_targets, steps=f["steps"],
                          lr=self.args.lora_lr, seed=self.args.seed, classifier=classifier, progress=False)
        seconds = time.perf_counter() - start
        self.add(name, "LoRA (equal bytes)", k, st["scorer"](loaded.model), info["trainable_parameters"],
                 info["adapter_bytes"], seconds, lora=info, budget_bytes=budget)


def print_row(r: dict, flush: bool = False) -> None:
    k = "-" if r["k"] is None else f"{r['k']:.0%}"
    parts = []
    for ref, q in r["quality"].items():
        fmt = "{:.2f}" if q["metric"] == "perplexity" else "{:.3f}"
        lo, hi = q["ci95"]
        s = f"{ref} {fmt.format(q['value'])} [{fmt.format(lo)}, {fmt.format(hi)}]"
        if "diff_ci95" in q:
            a, b = q["diff_ci95"]
            s += f" d={q['diff_vs_finetuned']:+.3f} [{a:+.3f}, {b:+.3f}]"
        parts.append(s)
    print(f"{r['setup']:<24} {r['method']:<20} {k:>4} {'; '.join(parts)}  stored {r['stored_fraction']:6.1%} "
          f"{r['bytes'] / 2**20:7.2f} MiB {r['seconds']:6.1f} s", flush=flush)


def verdict(rows: list[dict]) -> list[str]:
    """Per testbed and held-out set: is KEN at <= 75% kept within the fine-tuned model's quality (paired
    interval of the difference includes 0 or favours KEN), and which selection is best at each k."""
    lines = []
    for name in dict.fromkeys(r["setup"] for r in rows):
        mine = [r for r in rows if r["setup"] == name and r["k"] is not None]
        if not mine:
            continue
        ref = next(iter(mine[0]["quality"]))  # the in-domain held-out set
        lower = mine[0]["quality"][ref]["metric"] == "perplexity"
        ken = [r for r in mine if r["method"] == "KEN"]
        holds = [r for r in ken if r["k"] <= 0.75 and
                 (r["quality"][ref]["diff_ci95"][0] <= 0 if lower else r["quality"][ref]["diff_ci95"][1] >= 0)]
        if holds:
            lines.append(f"{name}: the paper's claim HOLDS on {ref} at k = "
                         + ", ".join(f"{r['k']:.0%} (d = {r['quality'][ref]['diff_vs_finetuned']:+.3f})" for r in holds)
                         + " (paired 95% interval of KEN - fine-tuned reaches 0 or better)")
        elif ken:
            lines.append(f"{name}: the paper's claim does NOT hold on {ref}: at every k measured ("
                         + ", ".join(f"{r['k']:.0%}: d = {r['quality'][ref]['diff_vs_finetuned']:+.3f} "
                                     f"[{r['quality'][ref]['diff_ci95'][0]:+.3f}, {r['quality'][ref]['diff_ci95'][1]:+.3f}]"
                                     for r in ken) + ") KEN is worse than the fine-tuned model beyond its interval")
        for k in sorted({r["k"] for r in mine}):
            at = [r for r in mine if r["k"] == k]
            best = min(at, key=lambda r: r["quality"][ref]["value"] * (1 if lower else -1))
            lo, hi = best["quality"][ref]["ci95"]
            inside = [r["method"] for r in at if r is not best and lo <= r["quality"][ref]["value"] <= hi]
            if len(at) == 1:
                lines.append(f"{name} k={k:.0%}: only {best['method']} measured ({best['quality'][ref]['value']:.3f})")
                continue
            lines.append(f"{name} k={k:.0%}: best on {ref} is {best['method']} ({best['quality'][ref]['value']:.3f}); "
                         + (f"inside its interval: {', '.join(inside)}" if inside else "every other selection is "
                            "outside its 95% interval"))
    return lines


MAIN = ("KEN", "KEN on deltas", "random", "largest |delta|", "DARE")
ALLOCATED = ", k by "  # "KEN, k by global": the same selection with per-tensor k from an allocation over |delta|
BY_DELTA = tuple(f"{sel}{ALLOCATED}global" for sel in ("KEN", "KEN on deltas", "largest |delta|"))
BEDS = ("minilm-l6/austen-novels", "smollm2-135m/austen")
# (testbed, what, k) in priority order: run one process per testbed (--testbeds) to use both cores
PLAN = ([(bed, sel, k) for bed in BEDS for k in (0.25, 0.75) for sel in MAIN]
        + [(bed, "probe", None) for bed in BEDS] + [(bed, "LoRA", 0.25) for bed in BEDS]
        + [(bed, "largest |fine-tuned|", k) for bed in BEDS for k in (0.25, 0.75)]
        + [(bed, sel, k) for bed in BEDS for k in (0.10, 0.25) for sel in BY_DELTA]
        + [(bed, sel, k) for bed in BEDS for k in (0.10, 0.50) for sel in SELECTIONS]
        + [(bed, sel, 0.25) for bed in ("minilm-l6/pang-lee", "minilm-l6/newsgroups-mini") for sel in MAIN])


def merge(paths: list[str], out: str) -> None:
    """One result file from several runs' files (e.g. one process per testbed): rows joined, verdict redone."""
    import json

    runs = [json.loads(Path(p).read_text()) for p in paths]
    rows, seen = [], set()
    for r in (r for run in runs for r in run["rows"]):
        key = (r["setup"], r["method"], r["k"], tuple(sorted((q, v["n"]) for q, v in r["quality"].items())))
        if key not in seen:  # every run measures its testbed's fine-tuned (and pre-trained) model again
            seen.add(key)
            rows.append(r)
    merged = {**runs[0], "rows": rows, "verdict": verdict(rows), "merged_from": [str(p) for p in paths],
              "protocols": {k: v for run in runs for k, v in run.get("protocols", {}).items()},
              "configs": [run["config"] for run in runs]}
    write_json(out, merged)
    for r in rows:
        print_row(r)
    print("\n" + "\n".join(merged["verdict"]))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", nargs="*", default=None, choices=list(TESTBEDS),
                        help="only these testbeds (default: every testbed of the plan)")
    parser.add_argument("--ks", nargs="*", type=float, default=None, help="only these k (default: the plan's)")
    parser.add_argument("--methods", nargs="*", default=None, metavar="LABEL",
                        help="only these plan entries (selection labels, 'probe', 'LoRA'; default: all)")
    parser.add_argument("--rows", nargs="*", default=None, metavar="LABEL@K",
                        help="only these plan entries, e.g. 'KEN@0.25' 'LoRA@0.25' (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=400, help="held-out passages per classifier variant")
    parser.add_argument("--probe-examples", type=int, default=1000, help="training passages of the frozen probe")
    parser.add_argument("--windows", type=int, default=16, help="in-domain held-out perplexity windows")
    parser.add_argument("--wiki-windows", type=int, default=8, help="wiki:test perplexity windows")
    parser.add_argument("--seqlen", type=int, default=128, help="perplexity window length")
    parser.add_argument("--lora-lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=str(RESULTS / "ken_quality.json"))
    parser.add_argument("--merge", nargs="*", default=None, metavar="JSON", help="join these result files into --out")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out)
        return 0
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    for bed, what, k in PLAN:
        if ((args.testbeds and bed not in args.testbeds) or (args.ks and k is not None and k not in args.ks)
                or (args.methods and what not in args.methods)
                or (args.rows and f"{what}@{k}" not in args.rows)):
            continue
        if what == "probe":
            if not TESTBEDS[bed].lower_better:
                bench.probe(bed)
        elif what == "LoRA":
            bench.lora(bed, k)
        else:
            bench.selection(bed, what, k)
    print("\n" + "\n".join(verdict(bench.rows)))
    print(f"wrote {bench.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
