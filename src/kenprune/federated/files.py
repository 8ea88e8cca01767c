"""The statistics file: what a client hands the server (sums and counts, never text or activations).

`stats.safetensors` holds, per distinct layer input, `<key>.sq_sum` and (SparseGPT) `<key>.xtx`
in float64; its metadata (JSON) names the model it was computed on (weights hash), the statistic and
method, how it was computed (`mode`), each Linear's input key, each key's token count, and each
client's data identity (corpus:split, windows, seqlen, seed, tokens, sha256 of the token ids; no text).
A file computed on another model, or for a method needing another statistic, is refused in one line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import KenpruneError
from ..fileio import atomic_file
from .stats import ShardStats

STATS_FILE = "stats.safetensors"
FORMAT = "kenprune.stats"
VERSION = 1
# how the statistics were computed: per-block rounds on the pruned prefix (exactly the centralized engine)
# or one dense pass (each block fed the dense prefix: a separate process has no pruned prefix to run)
MODES = ("rounds", "dense")


def save_stats(path: str | Path, layers: Mapping[str, ShardStats], meta: Mapping[str, Any]) -> Path:
    """Write {linear name: ShardStats} (shared inputs stored once) and `meta` to a safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    keys: dict[int, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    tokens: dict[str, int] = {}
    for name, s in layers.items():
        if id(s) not in keys:
            key = keys[id(s)] = f"in{len(keys)}"
            tensors[f"{key}.sq_sum"] = s.sq_sum.detach().cpu().contiguous()
            if s.xtx is not None:
                tensors[f"{key}.xtx"] = s.xtx.detach().cpu().contiguous()
            tokens[key] = s.tokens
        names[name] = keys[id(s)]
    from ..formats.sparse import _crc32

    header = {**meta, "format": FORMAT, "version": VERSION, "names": names, "tokens": tokens,
              "crc32": _crc32(tensors)}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"kenprune": json.dumps(header)})
    return path


def stats_path(path: str | Path) -> Path:
    """A statistics file, or a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / STATS_FILE
    if not path.is_file():
        raise KenpruneError(f"{path} does not exist: give a statistics file or a `kenprune stats` run folder")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    path = stats_path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = (handle.metadata() or {}).get("kenprune")
    except Exception as exc:  # safetensors raises its own error types for a damaged or foreign file
        raise KenpruneError(f"{path} is not a safetensors file ({str(exc).splitlines()[0][:120]})") from None
    try:
        meta = json.loads(meta) if meta else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise KenpruneError(f"{path} is not a kenprune statistics file (written by `kenprune stats export`)")
    if meta.get("version") != VERSION:
        raise KenpruneError(f"{path} is a version {meta.get('version')} statistics file; this kenprune reads "
                            f"version {VERSION}: export it again")
    return meta


def load_stats(path: str | Path) -> tuple[dict[str, ShardStats], dict[str, Any]]:
    """({linear name: ShardStats}, metadata) of a statistics file; Linears that shared an input share one object."""
    from safetensors.torch import load_file

    from ..formats.sparse import _crc32

    meta = read_meta(path)
    try:
        tensors = load_file(str(stats_path(path)))
    except Exception as exc:  # a damaged tensor section
        raise KenpruneError(f"{stats_path(path)} is damaged ({str(exc).splitlines()[0][:120]}); export it again") \
            from None
    if _crc32(tensors) != meta.get("crc32"):
        raise KenpruneError(f"{stats_path(path)} is damaged (checksum mismatch); export it again")
    by_key: dict[str, ShardStats] = {}
    for key, tokens in meta["tokens"].items():
        s = ShardStats(int(tensors[f"{key}.sq_sum"].numel()), False)
        s.sq_sum, s.xtx, s.tokens = tensors[f"{key}.sq_sum"], tensors.get(f"{key}.xtx"), int(tokens)
        by_key[key] = s
    return {name: by_key[key] for name, key in meta["names"].items()}, meta


def check_compatible(metas: Sequence[Mapping[str, Any]], sources: Sequence[str], *,
                     model: Mapping[str, Any] | None = None, statistic: str | None = None,
                     method: str | None = None) -> None:
    """Refuse, in one line, statistics computed on another model, for another statistic, or in another mode."""
    for meta, source in zip(metas, sources):
        if model is not None and meta["model"]["weights_sha256"] != model["weights_sha256"]:
            raise KenpruneError(f"{source} was computed on model {meta['model']['name']} (weights "
                                f"{meta['model']['weights_sha256'][:12]}), not on {model['name']} (weights "
                                f"{model['weights_sha256'][:12]}); export the statistics from this model")
        if statistic is not None and meta["statistic"] != statistic:
            raise KenpruneError(f"{source} holds {meta['statistic']} statistics (exported for {meta['method']}); "
                                f"{method or 'this method'} needs {statistic}: export with --method {method}")
        first = metas[0]
        for key in ("model", "statistic", "mode", "blocks"):
            value = meta[key]["weights_sha256"] if key == "model" else meta.get(key)
            expected = first[key]["weights_sha256"] if key == "model" else first.get(key)
            if value != expected:
                raise KenpruneError(f"{source} and {sources[0]} differ in {key} ({value} vs {expected}); "
                                    f"statistics merge only when computed the same way on the same model")
