"""Files that shrink: sparse safetensors (bitmask or N:M packing) and loaders back to dense."""
from .sparse import load_sparse, load_sparse_model, read_manifest, save_sparse

__all__ = ["save_sparse", "load_sparse", "load_sparse_model", "read_manifest"]
