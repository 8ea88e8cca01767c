"""Python functions behind `kenprune prune --method structured` and `kenprune recover` (same names, defaults)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .. import provenance
from ..models.families import adapter_for
from ..models.loading import LoadedModel, load_model
from ..errors import KenpruneError
from ..fileio import write_json
from ..measure import StageTimer, path_bytes, peak_rss_bytes
from ..structured.io import save_structured
from ..structured.plan import PrunePlan
from ..structured.prune import prune_structured
from ..structured.recover import LoraSettings, lora_recover

REPORT_FILE = "kenprune-report.json"


def _perplexity(loaded: LoadedModel, data: str | None, seqlen: int, max_windows: int | None,
                progress: bool) -> float | None:
    if not data:
        return None
    from ..evaluate import perplexity
    from ..evaluate.protocol import PerplexityProtocol

    protocol = PerplexityProtocol(data=data, seqlen=seqlen, max_windows=max_windows)
    return perplexity(loaded, protocol, progress=progress, identify=False).perplexity


def _check_out(out: str | Path | None) -> Path:
    if not out:
        raise KenpruneError("--out is required: the folder to write the pruned model to")
    out = Path(out)
    if out.exists() and not (out / "config.json").exists() and any(out.iterdir()):
        raise KenpruneError(f"{out} exists and is not a model folder; choose another --out")
    return out


def structured_prune(model: str = "smollm2-135m", out: str | Path | None = None, *, importance: str = "taylor",
                     ratio: float = 0.2, keep_first: int = 0, keep_last: int = 0, round_to: int = 8,
                     global_ranking: bool = False, attention_unit: str = "auto", calib: str = "wiki:calib",
                     nsamples: int = 10, seqlen: int = 128, seed: int = 0, blocks_per_pass: int | None = None,
                     eval: str | None = None, eval_seqlen: int = 512, max_windows: int | None = 8,
                     latency: bool = True, latency_repeats: int = 5, progress: bool = True) -> dict[str, Any]:
    """Prune whole heads and MLP channels, save a folder that reloads, and report size, speed and perplexity."""
    out = _check_out(out)
    plan = PrunePlan(ratio, keep_first, keep_last, round_to, global_ranking)
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model)
    base = loaded.identity()
    dense = copy.deepcopy(loaded.model) if (latency or eval) else None
    with timer.stage("prune"):
        result = prune_structured(loaded, plan, importance=importance, attention_unit=attention_unit, calib=calib,
                                  nsamples=nsamples, seqlen=seqlen, seed=seed, blocks_per_pass=blocks_per_pass,
                                  progress=progress)
    report: dict[str, Any] = {"method": "structured", "model": model, **result.to_dict()}
    if latency:
        from ..evaluate.latency import compare_latency

        with timer.stage("latency"):
            dense_latency, pruned_latency, ratios = compare_latency(dense, loaded.model, rounds=latency_repeats)
        report["latency"] = {"dense": dense_latency, "pruned": pruned_latency, "speedup": ratios}
    if eval:
        with timer.stage("eval"):
            dense_loaded = LoadedModel(dense, loaded.tokenizer, loaded.name, loaded.source, loaded.task, loaded.bos)
            report["perplexity"] = {"data": eval, "seqlen": eval_seqlen, "max_windows": max_windows,
                                    "dense": _perplexity(dense_loaded, eval, eval_seqlen, max_windows, progress),
                                    "pruned": _perplexity(loaded, eval, eval_seqlen, max_windows, progress)}
    del dense
    with timer.stage("save"):
        save_structured(loaded, out, {"method": "structured", "base": base, "structured": result.to_dict()})
    report.update({"out": str(out), "file_bytes": path_bytes(out), "seconds": timer.seconds,
                   "peak_rss_bytes": peak_rss_bytes(), "base_model": base, "pruned_model": loaded.identity(), **provenance.record()})
    write_json(out / REPORT_FILE, report)
    return report


def recover(model: str, out: str | Path | None = None, *, data: str = "lee", steps: int = 50, seqlen: int = 256,
            batch_size: int = 2, lr: float = 2e-4, rank: int = 8, alpha: int = 16, dropout: float = 0.05,
            seed: int = 0, eval: str | None = "wiki:test", eval_seqlen: int = 512, max_windows: int | None = 8,
            progress: bool = True) -> dict[str, Any]:
    """LoRA-tune a (pruned) model, merge the adapters back, save a plain folder; perplexity before and after."""
    out = _check_out(out)
    settings = LoraSettings(steps, seqlen, batch_size, lr, rank, alpha, dropout, seed)
    settings.check()
    timer = StageTimer()
    with timer.stage("load"):
        loaded = load_model(model)
    adapter_for(loaded.model)  # a family without an adapter fails before the first evaluation
    with timer.stage("eval"):
        before = _perplexity(loaded, eval, eval_seqlen, max_windows, progress)
    source = loaded.identity()
    with timer.stage("train"):
        training = lora_recover(loaded, data, settings, progress=progress)
    with timer.stage("eval"):
        after = _perplexity(loaded, eval, eval_seqlen, max_windows, progress)
    record = {**loaded.record, "recovery": training, "recovered_from": source}
    with timer.stage("save"):
        save_structured(loaded, out, record)
    report = {"method": "lora-recovery", "model": model, "out": str(out), "training": training,
              "perplexity": {"data": eval, "seqlen": eval_seqlen, "max_windows": max_windows,
                             "before": before, "after": after},
              "file_bytes": path_bytes(out), "seconds": timer.seconds, **provenance.record()}
    write_json(out / REPORT_FILE, report)
    return report
