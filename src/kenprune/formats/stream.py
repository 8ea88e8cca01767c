"""Write a safetensors file one tensor at a time; open one with a one-line error if it is damaged.

safetensors' own `save_file` takes a dict, so every encoded tensor (masks, packed values) must
exist at once, a second copy of most of the model; here each tensor is encoded and written in
turn, so the extra memory is one tensor's. The file is standard: `safetensors.safe_open` reads it.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from ..errors import KenpruneError, describe
from ..fileio import atomic_file

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def raw_bytes(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's bytes as a flat uint8 array (an empty tensor, whose stride torch cannot view, has none)."""
    if tensor.numel() == 0:
        return np.zeros(0, dtype=np.uint8)
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def write_safetensors(path: str | Path, tensors: Iterable[tuple[str, torch.Tensor]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Stream (name, tensor) pairs into `path` atomically; `metadata` may be filled while they stream."""
    header: dict[str, object] = {}
    offset = 0
    with atomic_file(path) as tmp, tempfile.TemporaryFile(dir=Path(tmp).parent) as data:
        for name, tensor in tensors:
            if name in header:
                raise ValueError(f"tensor {name!r} given twice")
            raw = raw_bytes(tensor)
            data.write(memoryview(raw))
            header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                            "data_offsets": [offset, offset + raw.nbytes]}
            offset += raw.nbytes
        if metadata:
            header["__metadata__"] = dict(metadata)
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
        with open(tmp, "wb") as out:
            out.write(len(blob).to_bytes(8, "little"))
            out.write(blob)
            data.seek(0)
            shutil.copyfileobj(data, out, 1 << 24)


@contextlib.contextmanager
def open_safetensors(path: str | Path, hint: str = "") -> Iterator[Any]:
    """safetensors' `safe_open(path)`; a truncated, empty or garbled file raises KenpruneError, one line
    naming it (safetensors checks the header and that the tensors cover the file exactly)."""
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as exc:  # SafetensorError, OSError, ...: safetensors raises several types
        if "Cannot allocate memory" in str(exc):  # a memory or address-space limit, not a damaged file
            raise KenpruneError(f"not enough memory to map {path} ({describe(exc)}); free memory, or prune with "
                                f"--stream on to read it block by block") from None
        raise KenpruneError(f"{path} is truncated or not a readable safetensors file ({describe(exc)})"
                            f"{'; ' + hint if hint else ''}") from None
    with handle:
        yield handle
