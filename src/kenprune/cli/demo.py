"""`kenprune demo`: the README's first command, a short tour on the embedded real models.

1. dense perplexity of smollm2-135m under the pinned protocol;
2. Wanda at 50 % on smollm2-135m: perplexity before/after, the dense folder vs the sparse file;
3. KEN on minilm-l6 fine-tuned on pang-lee: accuracy and the subnetwork file vs the full model;
4. one self-contained HTML report of all of it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

MIB = 2**20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="a few-minute tour on the embedded models (writes to ./kenprune-demo)")
    p.add_argument("--out", default="kenprune-demo", help="folder for the demo's results")
    p.add_argument("--windows", type=int, default=8, help="evaluation windows per perplexity (default 8)")
    p.add_argument("--nsamples", type=int, default=32, help="calibration windows for Wanda (default 32)")
    p.add_argument("--finetune-steps", type=int, default=40, help="fine-tuning steps for minilm-l6 (default 40)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.eval import run as evaluate
    from ..jobs.finetune import finetune
    from ..jobs.ken import run as ken
    from ..jobs.prune import run as prune
    from ..settings import Calibration, Evaluation, FinetuneSettings, KenSettings, Output, PruneSettings

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = Evaluation(data="wiki:test", seqlen=512, windows=args.windows)
    print("== 1. dense smollm2-135m on wiki:test (pinned protocol) ==")
    dense = evaluate("smollm2-135m", protocol, output=Output(out / "eval-dense", overwrite=True)).quality[0]
    proto = dense.protocol
    print(f"perplexity {dense.value:.3f} over {proto['predicted_tokens']} predicted tokens "
          f"({proto['windows']} x {proto['seqlen']}), {proto['windows'] * proto['seqlen'] / dense.seconds:.0f} tokens/s")

    print(f"\n== 2. Wanda, 50 % unstructured, on smollm2-135m ({args.nsamples} x 512 calibration tokens) ==")
    pruned_dir = out / "prune-wanda-50"
    record = prune("smollm2-135m", PruneSettings(method="wanda", sparsity=0.5),
                   calibration=Calibration(samples=args.nsamples, seqlen=512), evaluation=protocol,
                   output=Output(pruned_dir, overwrite=True))
    sizes = record.details["sizes"]
    print(f"perplexity {record.quality_of('before').value:.3f} -> {record.quality_of('after').value:.3f}; "
          f"block Linears {record.details['sparsity']:.1%} zero; pruning took {record.seconds()['prune']:.0f} s")
    print(f"on disk: dense folder {sizes['dense_folder_bytes'] / MIB:.0f} MiB, sparse file "
          f"{sizes['sparse_file_bytes'] / MIB:.0f} MiB ({sizes['sparse_vs_dense_same_dtype']:.2f}x)")

    print(f"\n== 3. KEN on minilm-l6 fine-tuned on pang-lee ({args.finetune_steps} steps) ==")
    finetuned_dir = out / "minilm-pang-lee"
    tuned = finetune("minilm-l6", "pang-lee", out=finetuned_dir, steps=args.finetune_steps, batch_size=16,
                     seqlen=64, lr=1e-4, seed=0, overwrite=True)
    ken_dir = out / "ken-25"
    kept = ken(str(finetuned_dir), KenSettings(k="0.25"), evaluation=Evaluation(data="pang-lee:test"),
               output=Output(ken_dir, overwrite=True))
    sizes = kept.details["sizes"]
    print(f"accuracy on pang-lee:test: pre-trained {tuned.quality_of('before').value:.3f}, "
          f"fine-tuned {tuned.quality_of('after').value:.3f}, KEN k=25% {kept.quality_of('after').value:.3f}")
    print(f"subnetwork file {sizes['subnetwork_bytes'] / MIB:.1f} MiB vs fine-tuned safetensors "
          f"{sizes['finetuned_safetensors_bytes'] / MIB:.1f} MiB ({sizes['ratio']:.2f}x)")

    runs = [out / "eval-dense", pruned_dir, ken_dir]
    print("\n== 4. report ==")
    try:
        from ..report import write_report
    except ImportError:
        print("the HTML report needs matplotlib: pip install 'kenprune[report]'")
    else:
        html = write_report(runs, out / "report.html")
        print(f"open {html.resolve().as_uri()} in a browser (self-contained: works offline)")
    print(f"\nresults in {out.resolve()}")
    return 0
