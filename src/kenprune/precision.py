"""Compute precision: which dtype block forwards and evaluations run in, and why.

    precision = resolve_dtype("auto", device)      # Precision(dtype="float32", reason="...", hardware={...})
    with compute_dtype(block, torch.bfloat16):      # the block's Linears run on bf16 copies under autocast
        out = block(hidden)

Only the matrix products drop precision: under `compute_dtype` every Linear of the given module
computes with a low-precision copy of its weight (made once per pass, not per call) and autocast
runs the other matmuls (attention) in the same dtype. What a method decides from stays in
float32 or the model's own precision: input statistics accumulate in float32
(`methods.base.InputStats`), masks are chosen from the original weights, SparseGPT's update runs in
float32 and the saved weights keep the model's dtype. The copies live only inside the context.

`auto` picks the fast dtype where the hardware has a fast path and float32 elsewhere (see
`AUTO_POLICY`); the choice and its reason go into every record.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .errors import KenpruneError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
COMPUTE_DTYPES = ("auto", *DTYPES)
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

# What `auto` runs in. The plan was bf16 where AMX or a GPU makes it fast, unless its quality cost
# is above 1 %. benchmarks/vs_reference.py (smollm2-135m, 8 x 512 calibration, 8 eval windows, one run)
# measured bf16 against fp32 at +0.8 % perplexity for Wanda 50 % and +1.6 % for Wanda 2:4: above 1 %, so
# `auto` keeps float32 everywhere and bf16 is the user's call (--dtype bfloat16), with the hardware that
# would make it fast named in the reason. A CPU with avx512_bf16 but no AMX (AMD Zen 4, this machine)
# gets about 2.2x on the matmul itself; AMX and GPUs were not measured here.
AUTO_POLICY = {"cuda": "float32", "amx": "float32", "avx512_bf16": "float32", "cpu": "float32"}


def canonical(name: str | torch.dtype | None, what: str = "--dtype", allow_auto: bool = True) -> str:
    """The dtype's canonical name (float32, bfloat16, float16, or auto), or a one-line error."""
    if isinstance(name, torch.dtype):
        for key, value in DTYPES.items():
            if value == name:
                return key
        raise KenpruneError(f"{what}: unsupported dtype {name}; choose one of: {', '.join(DTYPES)}")
    text = "auto" if name is None else ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    allowed = COMPUTE_DTYPES if allow_auto else tuple(DTYPES)
    if text not in allowed:
        raise KenpruneError(f"unknown {what} {name!r}; choose one of: {', '.join(allowed)}")
    return text


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def hardware(device: torch.device | str | None = None) -> dict[str, Any]:
    """What decides the fast dtype: the compute device, the CPU's AMX / avx512_bf16 flags, the GPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    flags = cpu_flags()
    info: dict[str, Any] = {"device": device.type, "amx_bf16": "amx_bf16" in flags, "amx_tile": "amx_tile" in flags,
                            "avx512_bf16": "avx512_bf16" in flags}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_bf16"] = bool(torch.cuda.is_bf16_supported())
    return info


def hardware_class(info: dict[str, Any]) -> str:
    """cuda, amx, avx512_bf16 or cpu: the row of AUTO_POLICY that applies."""
    if info["device"] == "cuda":
        return "cuda"
    if info["amx_bf16"] and info["amx_tile"]:
        return "amx"
    return "avx512_bf16" if info["avx512_bf16"] else "cpu"


@dataclass(frozen=True)
class Precision:
    """The dtype a run computes in, what was asked for, and why (for the record and the output)."""

    dtype: str
    requested: str = "auto"
    reason: str = ""
    hardware: dict[str, Any] = field(default_factory=dict)

    @property
    def torch(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"compute dtype {self.dtype} ({self.reason})"


_COST = "bf16 cost over 1 % perplexity in benchmarks/vs_reference.py (Wanda 2:4 +1.6 %)"
_WHY = {"cuda": f"a GPU, where bf16 is fast, but {_COST}; pass --dtype bfloat16 to use it",
        "amx": f"AMX on this CPU, where bf16 is fast, but {_COST}; pass --dtype bfloat16 to use it",
        "avx512_bf16": f"avx512_bf16 but no AMX on this CPU: bf16 matmuls ~2.2x fp32 here, and {_COST}; "
                       f"pass --dtype bfloat16 to use it",
        "cpu": "no bf16 matrix unit on this CPU"}


def resolve_dtype(requested: str | None = "auto", device: torch.device | str | None = None) -> Precision:
    """The compute dtype for `requested` on `device`: the one given, or AUTO_POLICY's choice with its reason."""
    requested = canonical(requested)
    info = hardware(device)
    if requested != "auto":
        return Precision(requested, requested, "as requested", info)
    kind = hardware_class(info)
    chosen = AUTO_POLICY[kind]
    if kind == "cuda" and not info.get("gpu_bf16", True):
        chosen, why = "float16", "a GPU without bf16: fp16 on its tensor cores"
    else:
        why = _WHY[kind]
    return Precision(chosen, "auto", f"auto: {why}", info)


def is_reduced(dtype: str | torch.dtype | None) -> bool:
    return dtype is not None and canonical(dtype) not in ("float32", "auto")


def _linears(module: nn.Module) -> list[nn.Module]:
    from .models.blocks import is_linear

    return [m for m in module.modules() if is_linear(m)]


@contextlib.contextmanager
def compute_dtype(module: nn.Module, dtype: str | torch.dtype | None, device: torch.device | str | None = None
                  ) -> Iterator[None]:
    """Run `module`'s forwards in `dtype`: its Linears on low-precision copies of their weights, the
    rest under autocast. float32 (or None) changes nothing. The original weights are back on exit."""
    if not is_reduced(dtype):
        yield
        return
    target = DTYPES[canonical(dtype)]
    param = next(module.parameters(), None)
    device_type = (torch.device(device) if device is not None else
                   param.device if param is not None else torch.device("cpu")).type
    swapped: list[tuple[nn.Module, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for m in _linears(module):
                original = m.weight
                if original.dtype == target or not original.is_floating_point():
                    continue
                m.weight = nn.Parameter(original.detach().to(target), requires_grad=False)
                swapped.append((m, original))
        with torch.autocast(device_type, dtype=target):
            yield
    finally:
        for m, original in reversed(swapped):
            m.weight = original


__all__ = ["DTYPES", "COMPUTE_DTYPES", "AUTO_POLICY", "Precision", "canonical", "resolve_dtype", "hardware",
           "compute_dtype", "is_reduced", "cpu_flags"]
