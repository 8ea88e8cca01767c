"""What produced a result: library versions, machine, and content hashes of weights and files."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Mapping

import torch

_TRACKED_PACKAGES = ("kenprune", "torch", "transformers", "safetensors", "numpy", "gguf", "gensim")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Versions of python and of every library that can change a number kenprune reports."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        out[name] = package_version(name)
    return out


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """A content hash of named tensors (names, dtypes, shapes and bytes), independent of file format.

    Tensors that share storage (tied weights) are hashed once, under their first name.
    """
    digest = hashlib.sha256()
    seen: set[tuple[int, int]] = set()
    for name in sorted(tensors):
        tensor = tensors[name]
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        if tensor.numel():  # hashed in place: no copy of the model's bytes
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def model_sha256(model: torch.nn.Module) -> str:
    """Content hash of a model's weights: what KEN and the sparse formats check a base model by."""
    return tensors_sha256(dict(model.state_dict()))


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit kenprune runs from (with "+dirty" for uncommitted changes); None outside a checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def record() -> dict[str, object]:
    """The provenance block every result file carries."""
    out: dict[str, object] = {"versions": versions(), "machine": machine(), "argv": list(sys.argv)}
    commit = source_commit()
    if commit:
        out["kenprune_commit"] = commit
    return out


def short(digest: str | None, n: int = 12) -> str:
    return digest[:n] if digest else "-"


def cache_root() -> Path:
    """Where conversions and derived data live: $KENPRUNE_CACHE, else the user's cache dir."""
    env = os.environ.get("KENPRUNE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kenprune"
