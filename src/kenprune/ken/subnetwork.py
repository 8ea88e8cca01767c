"""The subnetwork file: kept fine-tuned values + their positions + metadata, in one safetensors file.

Tensors in the file, per KEN-processed tensor T (positions in row-major order of T):
  `T::values`  the kept values (float32, float16 or bfloat16), in ascending flat position order;
  `T::mask`    a packed little-endian bitmask of T (uint8, numel/8 bytes), or
  `T::index`   the kept column indices per row, [rows, kept_per_row], uint8 / int16 (as uint16 bits)
               / int32, whichever of the two encodings is smaller.
Tensors excluded from KEN that differ from the base are stored whole as `T::full`.
The metadata key `kenprune` holds JSON: base identity + weights hash, k, kernel, tensor selection,
per-tensor kept counts, the hash of the payload (corruption check) and of the rebuilt model.
No pickle anywhere; a truncated or corrupt file is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import provenance
from ..errors import KenpruneError, describe
from ..fileio import atomic_file

FORMAT = "kenprune-subnetwork"
FORMAT_VERSION = 1
VALUE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 bytes, 8 entries per byte, least significant bit first."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = (1 << torch.arange(8, dtype=torch.int32))
    return (flat.view(-1, 8).to(torch.int32) * weights).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    bits = (packed.to(torch.int32)[:, None] >> torch.arange(8, dtype=torch.int32)) & 1
    return bits.reshape(-1)[:numel].bool()


def _index_dtype(n: int) -> tuple[torch.dtype, int] | None:
    if n <= 256:
        return torch.uint8, 1
    if n <= 65536:
        return torch.int16, 2  # stored as uint16 bits
    if n <= 2**31:
        return torch.int32, 4
    return None


def encode_positions(mask: torch.Tensor, rows: int) -> tuple[str, torch.Tensor]:
    """('mask', packed bits) or ('index', per-row column indices), whichever has fewer bytes.

    Indices need every row to keep the same count (KEN's case); otherwise the bitmask is used.
    """
    rowmask = mask.reshape(rows, -1)
    n = rowmask.shape[1]
    counts = rowmask.sum(dim=1)
    mask_bytes = (mask.numel() + 7) // 8
    kind = _index_dtype(n)
    if kind is not None and bool((counts == counts[0]).all()):
        dtype, width = kind
        if rows * int(counts[0]) * width < mask_bytes:
            cols = rowmask.nonzero()[:, 1].reshape(rows, int(counts[0]))
            return "index", cols.to(torch.int32).to(dtype)
    return "mask", pack_bits(mask)


def decode_positions(encoding: str, data: torch.Tensor, shape: tuple[int, ...], rows: int) -> torch.Tensor:
    """Bool mask of `shape` from an encoded position tensor."""
    numel = 1
    for d in shape:
        numel *= d
    if encoding == "mask":
        if data.dtype != torch.uint8 or data.numel() != (numel + 7) // 8:
            raise ValueError("bitmask has the wrong size")
        return unpack_bits(data, numel).reshape(shape)
    if encoding == "index":
        n = numel // rows
        cols = data.to(torch.int32)
        if data.dtype == torch.int16:
            cols = cols & 0xFFFF
        if cols.dim() != 2 or cols.shape[0] != rows or (cols.numel() and (cols.min() < 0 or cols.max() >= n)):
            raise ValueError("index table is out of range")
        out = torch.zeros(rows, n, dtype=torch.bool)
        out.scatter_(1, cols.long(), True)
        return out.reshape(shape)
    raise ValueError(f"unknown position encoding {encoding!r}")


@dataclass
class Subnetwork:
    """What a subnetwork file holds, in memory: per tensor a kept mask + values, or a whole tensor."""

    masks: dict[str, torch.Tensor]  # name -> bool mask (shape of the tensor)
    values: dict[str, torch.Tensor]  # name -> 1-D kept values, flat order
    full: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> whole replacement tensor
    rows: dict[str, int] = field(default_factory=dict)  # name -> number of KEN rows
    meta: dict[str, Any] = field(default_factory=dict)

    def apply_to(self, state: dict[str, torch.Tensor]) -> None:
        """Write kept values (and whole tensors) into `state` tensors in place (a base's parameters)."""
        with torch.no_grad():
            for name, mask in self.masks.items():
                target = state[name]
                flat = target.view(-1)
                flat[mask.reshape(-1).to(target.device)] = self.values[name].to(target.dtype, copy=False).to(target.device)
            for name, tensor in self.full.items():
                state[name].copy_(tensor)


def write_subnetwork(path: str | Path, sub: Subnetwork, value_dtype: str = "fp32") -> dict[str, Any]:
    """Write `sub` atomically; returns the metadata written (with per-tensor encodings and bytes)."""
    from safetensors.torch import save_file

    if value_dtype not in VALUE_DTYPES:
        raise KenpruneError(f"unknown value dtype {value_dtype!r}; choose one of: {', '.join(VALUE_DTYPES)}")
    dtype = VALUE_DTYPES[value_dtype]
    tensors: dict[str, torch.Tensor] = {}
    table: dict[str, Any] = {}
    for name, mask in sub.masks.items():
        rows = sub.rows.get(name, 1)
        encoding, positions = encode_positions(mask, rows)
        values = sub.values[name].detach().to("cpu", dtype).contiguous()
        tensors[f"{name}::values"] = values
        tensors[f"{name}::{encoding}"] = positions.contiguous()
        table[name] = {"shape": list(mask.shape), "rows": rows, "kept": int(values.numel()),
                       "encoding": encoding, "position_bytes": positions.numel() * positions.element_size(),
                       "value_bytes": values.numel() * values.element_size()}
    for name, tensor in sub.full.items():
        tensors[f"{name}::full"] = tensor.detach().to("cpu", dtype).contiguous()
        table[name] = {"shape": list(tensor.shape), "encoding": "full", "kept": tensor.numel()}
    meta = {**sub.meta, "format": FORMAT, "format_version": FORMAT_VERSION, "value_dtype": value_dtype,
            "tensors": table, "payload_sha256": provenance.tensors_sha256(tensors)}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "kenprune": json.dumps(meta)})
    return meta


def read_subnetwork(path: str | Path) -> Subnetwork:
    """Read and verify a subnetwork file; a truncated, corrupt or foreign file raises KenpruneError."""
    from ..formats.stream import open_safetensors

    path = Path(path)
    if not path.is_file():
        raise KenpruneError(f"subnetwork file not found: {path}")
    with open_safetensors(path) as fh:
        header = fh.metadata() or {}
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    if header.get("format") != FORMAT or "kenprune" not in header:
        raise KenpruneError(f"{path} is not a kenprune subnetwork file (no kenprune metadata)")
    try:
        meta = json.loads(header["kenprune"])
    except ValueError:
        raise KenpruneError(f"{path} has corrupt metadata (not JSON)") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("tensors"), dict):
        raise KenpruneError(f"{path} has corrupt metadata (no tensor table)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise KenpruneError(f"{path} has format version {meta.get('format_version')}; this kenprune reads "
                            f"version {FORMAT_VERSION}")
    if provenance.tensors_sha256(tensors) != meta.get("payload_sha256"):
        raise KenpruneError(f"{path} is corrupt: its tensors do not match the recorded payload hash")
    sub = Subnetwork(masks={}, values={}, meta=meta)
    for name, info in meta["tensors"].items():
        try:
            shape = tuple(int(d) for d in info["shape"])
            if info["encoding"] == "full":
                sub.full[name] = tensors[f"{name}::full"]
                continue
            mask = decode_positions(info["encoding"], tensors[f"{name}::{info['encoding']}"], shape, info["rows"])
            values = tensors[f"{name}::values"]
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise KenpruneError(f"{path} is corrupt at tensor {name} ({describe(exc, 120)})") from None
        if int(mask.sum()) != values.numel():
            raise KenpruneError(f"{path} is corrupt at tensor {name}: {values.numel()} values for "
                                f"{int(mask.sum())} positions")
        sub.masks[name], sub.values[name], sub.rows[name] = mask, values, info["rows"]
    return sub
