"""The `kenprune prune` results recorded before the spine refactor (tests/jobs/prune_golden.json), and the
runs that reproduce them: tiny Llama / GPT-2 / OPT folders, every method, unstructured and N:M, an allocation
and --include-embeddings. `python -m tests.jobs.prune_golden` rewrites the JSON from the code as it is now. The SparseGPT cases were
re-recorded when H^-1 moved to cholesky_solve (weights moved by float32 rounding, perplexities by ~1e-8), and
every case runs on one thread, since SparseGPT's float32 sums depend on the thread count.
"""
from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).with_name("prune_golden.json")
CASES = [
    ("llama", ["--method", "magnitude", "--sparsity", "0.5"]),
    ("llama", ["--method", "wanda", "--sparsity", "0.5"]),
    ("llama", ["--method", "sparsegpt", "--sparsity", "0.5"]),
    ("llama", ["--method", "wanda", "--pattern", "2:4"]),
    ("llama", ["--method", "sparsegpt", "--pattern", "2:4", "--sparse-dtype", "float16"]),
    ("llama", ["--method", "wanda", "--sparsity", "0.6", "--allocation", "owl"]),
    ("llama", ["--method", "magnitude", "--sparsity", "0.5", "--include-embeddings"]),
    ("gpt2", ["--method", "wanda", "--sparsity", "0.5"]),
    ("gpt2", ["--method", "sparsegpt", "--sparsity", "0.5"]),
    ("opt", ["--method", "wanda", "--sparsity", "0.5"]),
    ("opt", ["--method", "sparsegpt", "--pattern", "2:4"]),
]
# before the refactor the evaluation followed --seqlen; now it is set on its own (and the dtype is pinned)
EXTRA = ["--eval-seqlen", "64", "--dtype", "float32"]
COMMON = ["--nsamples", "4", "--seqlen", "64", "--eval", "wiki:test", "--eval-windows", "2", "--seed", "0"]


def tiny_folder(arch: str, root: Path) -> Path:
    """A tiny random model of `arch` with smollm2's real tokenizer, saved as a Hugging Face folder."""
    from transformers import AutoTokenizer

    from kenprune.testing import tiny_causal_lm

    try:
        from kenprune.models.loading import MODELS
    except ImportError:  # before the spine refactor
        from kenprune.models.loading import MODELS
    folder = root / f"tiny-{arch}"
    if folder.exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("smollm2-135m").folder())
    model = tiny_causal_lm(arch, layers=2, vocab=len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _perplexities(out: Path) -> dict[str, float]:
    if (out / "run.json").exists():
        record = json.loads((out / "run.json").read_text())
        return {q["role"]: q["value"] for q in record["quality"] if q["metric"] == "perplexity"}
    report = json.loads((out / "report.json").read_text())
    return {"before": report["before"]["perplexity"], "after": report["after"]["perplexity"]}


def run_case(arch: str, args: list[str], root: Path, extra: tuple[str, ...] | list[str] = ()) -> dict:
    """Run one prune command; the hashes of its weights and sparse file, and its perplexities."""
    from safetensors.torch import load_file

    from kenprune.cli import main
    from kenprune.provenance import tensors_sha256

    import torch

    out = root / ("run-" + arch + "-" + "-".join(a.strip("-") for a in args))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # SparseGPT's float32 sums differ in their last bits with the thread count
    try:
        code = main(["prune", "--model", str(tiny_folder(arch, root)), *args, *COMMON, *extra, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, f"prune {arch} {args} exited {code}"
    weights = tensors_sha256(load_file(str(out / "model" / "model.safetensors")))
    sparse = tensors_sha256(load_file(str(out / "model.sparse.safetensors")))
    return {"weights_sha256": weights, "sparse_sha256": sparse, "perplexity": _perplexities(out)}


def key(arch: str, args: list[str]) -> str:
    return f"{arch} {' '.join(args)}"


if __name__ == "__main__":
    import os
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        results = {key(a, args): run_case(a, args, Path(tmp), extra=EXTRA) for a, args in CASES}
    GOLDEN.write_text(json.dumps({"common": COMMON, "cases": results}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
