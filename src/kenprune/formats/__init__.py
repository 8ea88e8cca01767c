"""Files that shrink: sparse safetensors (bitmask or N:M packing) and loaders back to dense."""
from .sparse import load_sparse, load_sparse_model, read_manifest, save_sparse

__all__ = ["save_sparse", "load_sparse", "load_sparse_model", "read_manifest"]

from dataclasses import dataclass
from typing import Any, Callable

from ..registry import Registry


@dataclass(frozen=True)
class Format:
    """A file format that shrinks a pruned model: write a state dict, read it back dense and exact."""

    save: Callable[..., dict[str, Any]]  # (state or model, path, **options) -> what was written
    load: Callable[..., dict]  # (path) -> {name: dense tensor}
    options: tuple[dict[str, Any], ...] = ({},)  # option sets the contract test exercises


FORMATS: Registry[Format] = Registry("format")
FORMATS.add("sparse-safetensors", Format(save_sparse, load_sparse, ({}, {"nm": (2, 4)})),
            "packed bitmask + values, or N:M values + small indices, in a standard safetensors file")

__all__ += ["FORMATS", "Format"]
