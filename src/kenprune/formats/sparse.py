"""A safetensors file that really shrinks: bitmask + nonzero values, or N:M values + small indices.

Each floating tensor is stored in the smallest of three encodings (N:M wins whenever the
caller names the pattern and the tensor fits it):
  dense    NAME                                   the tensor itself
  bitmask  NAME::mask (1 bit/element, row-major)  + NAME::values (the nonzeros, in order)
  nm       NAME::values [rows, cols/M, M-N]       + NAME::index (ceil(log2 M) bits per kept weight)
           (`nm-transposed`: the same for a weight stored [in, out], GPT-2's Conv1D)
Shared tensors (tied embeddings) are stored once. The metadata key `kenprune` holds a JSON
manifest (encodings, shapes, dtypes, aliases, the model config, a CRC-32 of each tensor's stored
bytes), so `load_sparse_model` rebuilds the dense model: every tensor equal to the one saved. A
truncated, garbled or foreign file is refused with one line naming it (KenpruneError).
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from ..errors import KenpruneError, describe
from .bits import index_width, pack_bits, unpack_bits
from .stream import open_safetensors, raw_bytes, write_safetensors

FORMAT = "kenprune-sparse"
VERSION = 1
DENSE, BITMASK, NM, NM_TRANSPOSED = "dense", "bitmask", "nm", "nm-transposed"


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _as_numpy(t: torch.Tensor):
    """A numpy view of t's bytes as integers of the same width (numpy has no bfloat16)."""
    return t.view(_SAME_SIZE_INT[t.element_size()]).numpy()


def _bitmask(t: torch.Tensor) -> dict[str, torch.Tensor]:
    keep = (t != 0).numpy()  # numpy's boolean indexing needs no int64 index array (torch's t[keep] does)
    values = torch.from_numpy(_as_numpy(t.contiguous())[keep]).view(t.dtype)
    return {"mask": pack_bits(torch.from_numpy(keep), 1), "values": values}


def _nm(t: torch.Tensor, n: int, m: int) -> dict[str, torch.Tensor] | None:
    """N:M packing of a 2-D tensor, or None when some group has more than M-N nonzeros."""
    if t.dim() != 2 or t.shape[1] % m:
        return None
    groups = t.reshape(t.shape[0], -1, m)
    nonzero = groups != 0
    if int(nonzero.sum(dim=-1, dtype=torch.int32).max()) > m - n:
        return None
    # the kept slots: every nonzero, topped up with zeros, in position order
    order = torch.sort((~nonzero).to(torch.uint8), dim=-1, stable=True).indices[..., : m - n]
    index = torch.sort(order, dim=-1).values
    return {"values": torch.gather(groups, -1, index), "index": pack_bits(index, index_width(m))}


def _encode(t: torch.Tensor, nm: tuple[int, int] | None) -> tuple[str, dict[str, torch.Tensor]]:
    dense_bytes = t.numel() * t.element_size()
    if not t.is_floating_point() or t.dim() < 2:
        return DENSE, {"": t}
    nonzeros = int(torch.count_nonzero(t))
    # N:M is tried only where it can hold: a dense embedding is never grouped (or transposed) for nothing
    if nm is not None and nonzeros * nm[1] <= t.numel() * (nm[1] - nm[0]):
        for encoding, view in ((NM, t), (NM_TRANSPOSED, t.T)):  # GPT-2's Conv1D stores [in, out]
            packed = _nm(view, *nm) if view.dim() == 2 else None
            if packed is not None and sum(p.numel() * p.element_size() for p in packed.values()) < dense_bytes:
                return encoding, packed
    if nonzeros * t.element_size() + (t.numel() + 7) // 8 < dense_bytes:
        return BITMASK, _bitmask(t)
    return DENSE, {"": t}


def _crc32(parts: Mapping[str, torch.Tensor]) -> int:
    """CRC-32 of a tensor's stored parts (names and bytes, in name order): catches damaged bytes."""
    crc = 0
    for part in sorted(parts):
        crc = zlib.crc32(part.encode() + b"\0", crc)
        crc = zlib.crc32(memoryview(raw_bytes(parts[part])), crc)
    return crc


def _decode(entry: Mapping[str, Any], parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    shape = entry["shape"]
    numel = 1
    for s in shape:
        numel *= s
    if entry["encoding"] == DENSE:
        return parts[""]
    if entry["encoding"] == BITMASK:
        keep = unpack_bits(parts["mask"], 1, numel).numpy().view(bool)
        out = torch.zeros(numel, dtype=parts["values"].dtype)
        _as_numpy(out)[keep] = _as_numpy(parts["values"].contiguous())
        return out.view(shape)
    if entry["encoding"] in (NM, NM_TRANSPOSED):
        m = entry["m"]
        values = parts["values"]
        index = unpack_bits(parts["index"], index_width(m), values.numel()).long().view(values.shape)
        out = torch.zeros(values.shape[0], values.shape[1], m, dtype=values.dtype)
        out = out.scatter_(-1, index, values).view(values.shape[0], -1)
        return (out.T if entry["encoding"] == NM_TRANSPOSED else out).contiguous().view(shape)
    raise KenpruneError(f"unknown encoding {entry['encoding']!r}; the file needs a newer kenprune")


def save_sparse(state: Mapping[str, torch.Tensor] | torch.nn.Module, path: str | Path, *,
                nm: tuple[int, int] | None = None, dtype: torch.dtype | None = None,
                config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write a compressed state dict (atomically); returns the manifest with per-encoding byte counts.

    nm: (N, M) to pack N:M-sparse matrices as values + indices; dtype: cast floating values
    (e.g. torch.float16); config: the model config dict (taken from a module's `.config`).
    """
    model_class = None
    if isinstance(state, torch.nn.Module):
        config = config if config is not None else state.config.to_dict() if hasattr(state, "config") else None
        model_class = type(state).__name__
        state = state.state_dict()
    entries: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    metadata: dict[str, str] = {}

    def encoded() -> Iterator[tuple[str, torch.Tensor]]:  # one tensor encoded at a time
        owners: dict[tuple, str] = {}
        for name, t in state.items():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
            if t.numel() and key in owners:
                aliases[name] = owners[key]
                continue
            owners[key] = name
            entries[name], parts = encode_tensor(t, nm=nm, dtype=dtype)
            for part, value in parts.items():
                yield part_name(name, part), value
        metadata["kenprune"] = manifest_json(entries, aliases, config, model_class)

    write_safetensors(path, encoded(), metadata)
    return summary(path, entries, nm, dtype)


def encode_tensor(t: torch.Tensor, *, nm: tuple[int, int] | None = None, dtype: torch.dtype | None = None
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """One tensor's manifest entry and stored parts (what `save_sparse` writes for it)."""
    t = t.detach().cpu()
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    encoding, parts = _encode(t, nm)
    entry: dict[str, Any] = {"encoding": encoding, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    if encoding in (NM, NM_TRANSPOSED):
        entry.update(n=nm[0], m=nm[1])
    entry["crc32"] = _crc32(parts)
    return entry, parts


def part_name(name: str, part: str) -> str:
    """The safetensors key of one stored part of tensor `name`."""
    return f"{name}::{part}" if part else name


def manifest_json(entries: Mapping[str, Any], aliases: Mapping[str, str], config: Mapping[str, Any] | None,
                  model_class: str | None) -> str:
    """The `kenprune` metadata value of a sparse file."""
    return json.dumps({"format": FORMAT, "version": VERSION, "tensors": entries, "aliases": aliases,
                       "config": config, "model_class": model_class})


def summary(path: str | Path, entries: Mapping[str, Any], nm: tuple[int, int] | None,
            dtype: torch.dtype | None) -> dict[str, Any]:
    """What `save_sparse` returns: the file, its bytes and how many tensors each encoding holds."""
    counts: dict[str, int] = {}
    for entry in entries.values():
        counts[entry["encoding"]] = counts.get(entry["encoding"], 0) + 1
    return {"path": str(path), "bytes": Path(path).stat().st_size, "tensors_by_encoding": counts,
            "nm": list(nm) if nm else None, "dtype": str(dtype).removeprefix("torch.") if dtype else None}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a sparse file; KenpruneError (one line, naming the file) for anything else."""
    if not Path(path).is_file():
        raise KenpruneError(f"sparse file not found: {path}")
    with open_safetensors(path) as f:
        meta = f.metadata() or {}
    try:
        manifest = json.loads(meta.get("kenprune", "null") or "null")
    except ValueError:
        raise KenpruneError(f"{path} has a corrupt kenprune manifest (not JSON); save it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise KenpruneError(f"{path} is not a kenprune sparse file (save it with kenprune prune)")
    if manifest.get("version") != VERSION:
        raise KenpruneError(f"{path} is a version {manifest.get('version')} sparse file; this kenprune reads "
                            f"version {VERSION}")
    if not isinstance(manifest.get("tensors"), dict) or not isinstance(manifest.get("aliases", {}), dict):
        raise KenpruneError(f"{path} has a malformed kenprune manifest; save it again")
    return manifest


def load_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state dict stored in a sparse file (aliases point at the same tensor).

    Every tensor's bytes are checked against the manifest's CRC-32 (files that record one), so a
    damaged file is refused, never decoded into wrong weights.
    """
    manifest = read_manifest(path)
    state: dict[str, torch.Tensor] = {}
    name = None
    try:
        with open_safetensors(path) as f:
            keys = set(f.keys())
            for name, entry in manifest["tensors"].items():
                if entry["encoding"] == DENSE:
                    parts = {"": f.get_tensor(name)}
                else:
                    prefix = f"{name}::"
                    parts = {k[len(prefix):]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
                if "crc32" in entry and _crc32(parts) != entry["crc32"]:
                    raise KenpruneError(f"{path} is corrupt: tensor {name} fails its CRC-32 check; save it again")
                tensor = _decode(entry, parts)
                if list(tensor.shape) != list(entry["shape"]):
                    raise ValueError(f"decoded shape {list(tensor.shape)}, expected {entry['shape']}")
                state[name] = tensor
        name = None
        for alias, target in manifest.get("aliases", {}).items():
            state[alias] = state[target]
    except KenpruneError:
        raise
    except Exception as exc:  # a damaged file fails inside safetensors, numpy or torch in many ways
        where = f" at tensor {name}" if name else ""
        raise KenpruneError(f"{path} is corrupt{where} ({describe(exc)}); save it again") from None
    return state


def load_sparse_model(path: str | Path) -> torch.nn.Module:
    """Rebuild the Hugging Face model saved with `save_sparse(model, ...)`, dense, in eval mode."""
    import transformers

    manifest = read_manifest(path)
    config = manifest.get("config")
    class_name = manifest.get("model_class") or ((config or {}).get("architectures") or [None])[0]
    if not config or not class_name:
        raise KenpruneError(f"{path} holds no model config; load its tensors with load_sparse()")
    state = load_sparse(path)
    try:
        config_obj = transformers.AutoConfig.for_model(**config)
        model = getattr(transformers, class_name)(config_obj)
        dtype = next(t.dtype for t in state.values() if t.is_floating_point())
        model.to(dtype).load_state_dict(state, strict=True)
    except Exception as exc:  # a manifest whose config does not fit its tensors, or a foreign class
        raise KenpruneError(f"{path} does not rebuild its model ({describe(exc)})") from None
    return model.eval()
